//! Majority arithmetic over a set of voters.

/// Number of votes (or acknowledgements) that make a majority of `voters`.
pub fn majority(voters: usize) -> usize {
    voters / 2 + 1
}

/// The highest value that a majority has reached: the majority-th largest of `values` (one
/// per voter). For match indexes it is the committed index; for acknowledged read rounds, the
/// latest round that confirmed the leadership. Groups are small, so it counts, for each value,
/// how many reach it (no allocation, no sorting). `values` must not be empty.
pub fn committed_index<T: Copy + Ord>(values: impl Iterator<Item = T> + Clone) -> T {
    let needed = majority(values.clone().count());
    values
        .clone()
        .filter(|&candidate| values.clone().filter(|&v| v >= candidate).count() >= needed)
        .max()
        .expect("a majority reaches at least the smallest value")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::LogIndex;

    fn idx(values: &[u64]) -> Vec<LogIndex> {
        values.iter().map(|&v| LogIndex(v)).collect()
    }

    #[test]
    fn majority_th_largest() {
        assert_eq!(committed_index(idx(&[5]).into_iter()), LogIndex(5));
        assert_eq!(committed_index(idx(&[5, 3, 9]).into_iter()), LogIndex(5));
        assert_eq!(committed_index(idx(&[1, 2, 3, 4]).into_iter()), LogIndex(2));
        assert_eq!(
            committed_index(idx(&[7, 7, 0, 0, 7]).into_iter()),
            LogIndex(7)
        );
        assert_eq!(
            committed_index(idx(&[9, 8, 0, 0, 1]).into_iter()),
            LogIndex(1)
        );
    }
}

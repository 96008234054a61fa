//! Majority arithmetic over a set of voters.

/// Number of votes (or acknowledgements) that make a majority of `voters`.
pub fn majority(voters: usize) -> usize {
    voters / 2 + 1
}

/// The highest value that a majority has reached: the majority-th largest of `values` (one
/// per voter). For match indexes it is the committed index; for acknowledged read rounds, the
/// latest round that confirmed the leadership. `scratch` avoids allocating on every call.
pub fn committed_index<T: Copy + Ord>(values: &[T], scratch: &mut Vec<T>) -> T {
    scratch.clear();
    scratch.extend_from_slice(values);
    let position = majority(values.len()) - 1;
    let (_, kth_largest, _) = scratch.select_nth_unstable_by(position, |a, b| b.cmp(a));
    *kth_largest
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
        let mut scratch = Vec::new();
        assert_eq!(committed_index(&idx(&[5]), &mut scratch), LogIndex(5));
        assert_eq!(committed_index(&idx(&[5, 3, 9]), &mut scratch), LogIndex(5));
        assert_eq!(
            committed_index(&idx(&[1, 2, 3, 4]), &mut scratch),
            LogIndex(2)
        );
        assert_eq!(
            committed_index(&idx(&[7, 7, 0, 0, 7]), &mut scratch),
            LogIndex(7)
        );
        assert_eq!(
            committed_index(&idx(&[9, 8, 0, 0, 1]), &mut scratch),
            LogIndex(1)
        );
    }
}

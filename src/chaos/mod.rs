//! Building blocks of the fault harness that tests the whole engine as deployed: a
//! fault-injecting TCP proxy per directed link ([`proxy`]).

pub mod proxy;

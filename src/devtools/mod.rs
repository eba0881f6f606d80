//! Tools for developers, not for a run: the sampling and training benchmarks and the fixtures
//! that checks against other implementations read.

pub mod bench;
pub mod fixtures;

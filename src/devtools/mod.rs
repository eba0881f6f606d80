//! Tools for developers, not for a run: the sampling, training and round benchmarks and the fixtures
//! that checks against other implementations read.

pub mod bench;
pub mod fixtures;
pub mod round;

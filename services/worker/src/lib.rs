//! The off-peak worker: runs jobs queued on Kafka (`retrace.jobs.<queue>`) when the system
//! is quiet, so work that need not happen now never adds to a peak. Urgent jobs and near
//! deadlines still run; failures retry through delayed retry topics, then dead-letter.

pub mod gate;
pub mod job;

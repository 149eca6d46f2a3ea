pub mod audit;
pub mod gated;
pub mod maintenance;
pub mod remediate;
pub mod restore;
pub mod set;
pub mod txn_output;
pub mod versions;

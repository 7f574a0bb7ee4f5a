//! The simulator's record of every mutating call it accepted, which tests read
//! to prove there were no duplicate or lost submissions.

/// One accepted mutating call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mutation {
    /// Log index the call was committed at (1, 2, 3, ...).
    pub index: u64,
    /// Raft term at the time.
    pub term: u64,
    /// Node (Raft id) that accepted the call: the leader of `term`.
    pub node: u64,
    /// gRPC method, e.g. `"CreatePipeline"`, `"Register"`.
    pub method: &'static str,
    /// Pipeline id or service id the call changed.
    pub target: String,
}

impl Mutation {
    /// Whether this is `method` applied to `target`.
    pub fn is(&self, method: &str, target: &str) -> bool {
        self.method == method && self.target == target
    }
}

//! What can go wrong talking to a router cluster, and how each failure is
//! classified: retried (transient), reported with the router's message
//! (permanent), or reported as a missing API (unimplemented).

use std::time::Duration;

use tonic::Code;

/// How a caller should treat a [`RouterError`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    /// May succeed later without any change: unreachable member, deadline,
    /// leader election, lost quorum. Retry with backoff / requeue.
    Transient,
    /// The router refused the request (or the request cannot be sent as is);
    /// retrying the same request will not help.
    Permanent,
    /// The router does not serve the method (e.g. builds without `RouterAdmin`).
    Unimplemented,
}

/// A failed router call. Variants name the member and method where that helps
/// an operator reading a condition message.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum RouterError {
    /// The cluster has no member endpoints to talk to (e.g. no pod has an IP yet).
    #[error("the router cluster has no members to talk to")]
    NoMembers,
    /// A member endpoint is not a valid `host:port`.
    #[error("router endpoint {member:?} is invalid: {message}")]
    InvalidMember { member: String, message: String },
    /// The member could not be reached (connection refused, reset, DNS, ...).
    #[error("router {member} is unreachable: {message}")]
    Unavailable { member: String, message: String },
    /// The member did not answer within the call deadline.
    #[error("router {member} did not answer {method} within {timeout:?}")]
    DeadlineExceeded { member: String, method: &'static str, timeout: Duration },
    /// The member is not the Raft leader; `leader` is the leader's address when it said.
    #[error("router {member} is not the leader (leader: {})", leader.as_deref().unwrap_or("unknown"))]
    NotLeader { member: String, leader: Option<String> },
    /// The cluster has lost its quorum: no leader can be elected and writes are refused.
    #[error("router cluster has no quorum (reported by {member}): {message}")]
    NoQuorum { member: String, message: String },
    /// The router refused the request for a reason other than leadership or quorum.
    #[error("router rejected {method}: {message}")]
    Rejected { method: &'static str, message: String },
    /// The object exists already and is not this client's own earlier submission
    /// (for a create: a pipeline with this id and a different configuration).
    #[error("router refused {method}, the object already exists: {message}")]
    AlreadyExists { method: &'static str, message: String },
    /// The object the request names does not exist on the router.
    #[error("router refused {method}, no such object: {message}")]
    NotFound { method: &'static str, message: String },
    /// The router does not implement the method (gRPC `UNIMPLEMENTED`).
    #[error("router does not implement {service}.{method}")]
    Unimplemented { service: &'static str, method: &'static str },
    /// Every attempt failed with a transient error; `last` is the final one.
    #[error("gave up after {attempts} attempts: {last}")]
    Exhausted { attempts: usize, last: Box<RouterError> },
}

impl RouterError {
    /// How to treat the error: retry, report, or report as missing API.
    pub fn class(&self) -> ErrorClass {
        match self {
            RouterError::Unavailable { .. }
            | RouterError::DeadlineExceeded { .. }
            | RouterError::NotLeader { .. }
            | RouterError::NoQuorum { .. }
            | RouterError::Exhausted { .. } => ErrorClass::Transient,
            RouterError::NoMembers
            | RouterError::InvalidMember { .. }
            | RouterError::Rejected { .. }
            | RouterError::AlreadyExists { .. }
            | RouterError::NotFound { .. } => ErrorClass::Permanent,
            RouterError::Unimplemented { .. } => ErrorClass::Unimplemented,
        }
    }

    /// Whether a retry of the same request may succeed.
    pub fn is_transient(&self) -> bool {
        self.class() == ErrorClass::Transient
    }

    /// PascalCase reason for a Kubernetes condition. An exhausted retry reports
    /// the reason of its last failure.
    pub fn reason(&self) -> &'static str {
        match self {
            RouterError::NoMembers => "NoRouterMembers",
            RouterError::InvalidMember { .. } => "RouterEndpointInvalid",
            RouterError::Unavailable { .. } => "RouterUnreachable",
            RouterError::DeadlineExceeded { .. } => "RouterTimeout",
            RouterError::NotLeader { .. } => "NoLeader",
            RouterError::NoQuorum { .. } => "QuorumLost",
            RouterError::Rejected { .. } => "RouterRejected",
            RouterError::AlreadyExists { .. } => "RouterConflict",
            RouterError::NotFound { .. } => "RouterNotFound",
            RouterError::Unimplemented { service: "RouterAdmin", .. } => "RouterAdminUnimplemented",
            RouterError::Unimplemented { .. } => "RouterMethodUnimplemented",
            RouterError::Exhausted { last, .. } => last.reason(),
        }
    }

    /// Short snake_case label for metrics. An exhausted retry reports the label
    /// of its last failure.
    pub fn label(&self) -> &'static str {
        match self {
            RouterError::NoMembers => "no_members",
            RouterError::InvalidMember { .. } => "invalid_member",
            RouterError::Unavailable { .. } => "unavailable",
            RouterError::DeadlineExceeded { .. } => "deadline_exceeded",
            RouterError::NotLeader { .. } => "not_leader",
            RouterError::NoQuorum { .. } => "no_quorum",
            RouterError::Rejected { .. } => "rejected",
            RouterError::AlreadyExists { .. } => "already_exists",
            RouterError::NotFound { .. } => "not_found",
            RouterError::Unimplemented { .. } => "unimplemented",
            RouterError::Exhausted { last, .. } => last.label(),
        }
    }

    /// The error as a condition message shows it: an exhausted retry without
    /// its attempt count, which differs from one failure to the next and would
    /// rewrite status each time (logs and Events carry the full error).
    pub fn summary(&self) -> String {
        match self {
            RouterError::Exhausted { last, .. } => format!("gave up retrying: {}", last.summary()),
            other => other.to_string(),
        }
    }

    /// The innermost error: `last` of an exhausted retry, else the error itself.
    pub fn root(&self) -> &RouterError {
        match self {
            RouterError::Exhausted { last, .. } => last.root(),
            other => other,
        }
    }
}

/// The gRPC service a method belongs to, for [`RouterError::Unimplemented`].
pub(crate) fn service_of(method: &'static str) -> &'static str {
    match method {
        "Register" | "Deregister" | "ListServices" | "Heartbeat" => "ServiceRegistry",
        _ => "RouterAdmin",
    }
}

/// What a `success=false` answer (or an error status) said, in the words routers use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// "not leader", with the leader's address when the message names one.
    NotLeader(Option<String>),
    /// "no quorum" / "quorum lost".
    NoQuorum,
    /// "already exists".
    AlreadyExists,
    /// "not found".
    NotFound,
    /// Anything else.
    Other,
}

/// Reads a router's refusal message. Matching is case-insensitive and on the
/// phrases Raft-based routers use ("not leader", "not the leader", "no quorum",
/// "already exists", "not found"); anything else is a plain rejection.
pub(crate) fn read_refusal(message: &str) -> Refusal {
    let lower = message.to_ascii_lowercase();
    if lower.contains("not leader") || lower.contains("not the leader") || lower.contains("notleader") {
        Refusal::NotLeader(leader_hint(message))
    } else if lower.contains("quorum") {
        Refusal::NoQuorum
    } else if lower.contains("no leader") || lower.contains("leader unknown") {
        Refusal::NotLeader(None)
    } else if lower.contains("already exists") {
        Refusal::AlreadyExists
    } else if lower.contains("not found") || lower.contains("does not exist") {
        Refusal::NotFound
    } else {
        Refusal::Other
    }
}

/// The leader's address in a not-leader message such as
/// `not leader; leader is 2 at 127.0.0.3:50051` (the address follows " at ").
pub(crate) fn leader_hint(message: &str) -> Option<String> {
    let lower = message.to_ascii_lowercase();
    let start = lower.find("leader is")?;
    let after = &message[start..];
    let at = after.find(" at ")?;
    let address: String = after[at + 4..]
        .trim_start()
        .chars()
        .take_while(|c| !c.is_whitespace() && !matches!(c, ';' | ',' | ')' | '('))
        .collect();
    (!address.is_empty()).then_some(address)
}

/// Maps a `success=false` answer from `member` to `method`, with the router's
/// `message`, onto a [`RouterError`].
pub(crate) fn from_refusal(member: &str, method: &'static str, message: &str) -> RouterError {
    let message =
        if message.is_empty() { "router answered success=false without a message" } else { message };
    match read_refusal(message) {
        Refusal::NotLeader(leader) => RouterError::NotLeader { member: member.to_string(), leader },
        Refusal::NoQuorum => {
            RouterError::NoQuorum { member: member.to_string(), message: message.to_string() }
        }
        Refusal::AlreadyExists => RouterError::AlreadyExists { method, message: message.to_string() },
        Refusal::NotFound => RouterError::NotFound { method, message: message.to_string() },
        Refusal::Other => RouterError::Rejected { method, message: message.to_string() },
    }
}

/// Maps a gRPC status from `member` for `method` onto a [`RouterError`].
///
/// Leadership and quorum phrases win over the code (routers send "not leader"
/// as UNAVAILABLE or FAILED_PRECONDITION). UNKNOWN is what tonic reports for
/// a connection torn down mid-call, so it is treated as unreachable (transient,
/// and bounded by the retry budget like every transient error). CANCELLED is
/// what a tonic server answers when the call's `grpc-timeout` expires.
pub(crate) fn from_status(
    member: &str,
    method: &'static str,
    timeout: Duration,
    status: &tonic::Status,
) -> RouterError {
    let message = status.message().to_string();
    match status.code() {
        Code::Unimplemented => return RouterError::Unimplemented { service: service_of(method), method },
        Code::DeadlineExceeded | Code::Cancelled => {
            return RouterError::DeadlineExceeded { member: member.to_string(), method, timeout };
        }
        Code::NotFound => return RouterError::NotFound { method, message },
        Code::AlreadyExists => return RouterError::AlreadyExists { method, message },
        _ => {}
    }
    match read_refusal(&message) {
        Refusal::NotLeader(leader) => return RouterError::NotLeader { member: member.to_string(), leader },
        Refusal::NoQuorum => return RouterError::NoQuorum { member: member.to_string(), message },
        _ => {}
    }
    match status.code() {
        Code::Unavailable | Code::Unknown | Code::Aborted | Code::ResourceExhausted => {
            RouterError::Unavailable { member: member.to_string(), message }
        }
        code => RouterError::Rejected { method, message: format!("{code:?}: {message}") },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leader_hint_reads_the_address_after_at() {
        assert_eq!(leader_hint("not leader; leader is 2 at 127.0.0.3:50051"), Some("127.0.0.3:50051".into()));
        assert_eq!(
            leader_hint("Not leader (leader is 3 at [fd00::3]:50051)"),
            Some("[fd00::3]:50051".into())
        );
        assert_eq!(leader_hint("not leader; leader is unknown"), None);
        assert_eq!(leader_hint("not leader"), None);
    }

    #[test]
    fn refusals_are_read_from_router_phrases() {
        assert_eq!(read_refusal("not leader; leader is 1 at h:1"), Refusal::NotLeader(Some("h:1".into())));
        assert_eq!(read_refusal("NOT THE LEADER"), Refusal::NotLeader(None));
        assert_eq!(read_refusal("no quorum: 1 of 3 members reachable"), Refusal::NoQuorum);
        assert_eq!(read_refusal("no leader elected yet"), Refusal::NotLeader(None));
        assert_eq!(read_refusal("pipeline a/b already exists"), Refusal::AlreadyExists);
        assert_eq!(read_refusal("pipeline a/b not found"), Refusal::NotFound);
        assert_eq!(read_refusal("stage sink has no service"), Refusal::Other);
    }

    #[test]
    fn statuses_map_to_classes() {
        let timeout = Duration::from_secs(1);
        let status =
            |code, msg: &str| from_status("m:1", "CreatePipeline", timeout, &tonic::Status::new(code, msg));
        assert_eq!(status(Code::Unimplemented, "").class(), ErrorClass::Unimplemented);
        assert_eq!(status(Code::Unimplemented, "").reason(), "RouterAdminUnimplemented");
        assert_eq!(status(Code::Unavailable, "tcp connect error").reason(), "RouterUnreachable");
        assert_eq!(status(Code::DeadlineExceeded, "").reason(), "RouterTimeout");
        assert_eq!(
            status(Code::FailedPrecondition, "not leader; leader is 2 at h:2"),
            RouterError::NotLeader { member: "m:1".into(), leader: Some("h:2".into()) }
        );
        assert_eq!(status(Code::Unavailable, "no quorum").reason(), "QuorumLost");
        assert_eq!(status(Code::InvalidArgument, "bad stage").class(), ErrorClass::Permanent);
        let unimplemented_registry =
            from_status("m:1", "Register", timeout, &tonic::Status::unimplemented("no registry"));
        assert_eq!(unimplemented_registry.reason(), "RouterMethodUnimplemented");
    }

    #[test]
    fn refusals_map_to_errors() {
        let not_leader = from_refusal("m:1", "UpdatePipeline", "not leader; leader is 3 at 10.0.0.3:50051");
        assert_eq!(
            not_leader,
            RouterError::NotLeader { member: "m:1".into(), leader: Some("10.0.0.3:50051".into()) }
        );
        assert_eq!(
            from_refusal("m:1", "CreatePipeline", "pipeline a/b already exists").reason(),
            "RouterConflict"
        );
        assert_eq!(from_refusal("m:1", "UpdatePipeline", "pipeline a/b not found").label(), "not_found");
        let rejected = from_refusal("m:1", "CreatePipeline", "");
        assert_eq!(rejected.class(), ErrorClass::Permanent);
        assert!(rejected.to_string().contains("without a message"), "{rejected}");
        assert_eq!(from_refusal("m:1", "CreatePipeline", "no quorum").class(), ErrorClass::Transient);
    }

    #[test]
    fn exhausted_reports_its_last_error() {
        let last = RouterError::NoQuorum { member: "m:1".into(), message: "no quorum".into() };
        let error = RouterError::Exhausted { attempts: 4, last: Box::new(last.clone()) };
        assert_eq!(error.class(), ErrorClass::Transient);
        assert_eq!(error.reason(), "QuorumLost");
        assert_eq!(error.label(), "no_quorum");
        assert_eq!(error.root(), &last);
        assert!(error.to_string().contains("4 attempts"));
        let again = RouterError::Exhausted { attempts: 2, last: Box::new(last) };
        assert_eq!(error.summary(), again.summary(), "the summary leaves the attempt count out");
        assert_eq!(
            error.summary(),
            "gave up retrying: router cluster has no quorum (reported by m:1): no quorum"
        );
    }
}

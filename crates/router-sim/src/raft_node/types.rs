//! The Raft types of a router node: its openraft configuration, what a member
//! is (where peers and clients reach it), and the commands the replicated
//! state machine applies. Commands and the catalog cross the wire and the
//! disk as JSON; the router's messages inside them are protobuf bytes.

use std::fmt;
use std::io::Cursor;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use conveyor_router_contract::proto::registry::{RegisterRequest, RegisterResponse};
use conveyor_router_contract::proto::router::PipelineConfig;

openraft::declare_raft_types!(
    /// openraft's type configuration for router nodes.
    pub TypeConfig:
        D = Command,
        R = Outcome,
        NodeId = u64,
        Node = Member,
        SnapshotData = Cursor<Vec<u8>>,
);

pub type Raft = openraft::Raft<TypeConfig>;
pub type Entry = openraft::Entry<TypeConfig>;
pub type LogId = openraft::LogId<u64>;
pub type Vote = openraft::Vote<u64>;
pub type StorageError = openraft::StorageError<u64>;
pub type StoredMembership = openraft::StoredMembership<u64, Member>;
pub type Metrics = openraft::RaftMetrics<u64, Member>;

/// A member of the cluster: its Raft address (as its peers list it, a DNS
/// name in a pod) and the address clients reach its gRPC services on.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub raft: String,
    pub api: String,
}

impl fmt::Display for Member {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "raft {} api {}", self.raft, self.api)
    }
}

/// A write, stamped by the leader with the time it was proposed so that every
/// member applies it identically.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Command {
    pub at: SystemTime,
    pub write: Write,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Write {
    CreatePipeline(#[serde(with = "proto_bytes")] PipelineConfig),
    UpdatePipeline {
        id: String,
        #[serde(with = "proto_bytes")]
        config: PipelineConfig,
    },
    DeletePipeline {
        id: String,
        force: bool,
    },
    SetEnabled {
        id: String,
        enabled: bool,
    },
    Register(#[serde(with = "proto_bytes")] RegisterRequest),
    Deregister {
        id: String,
    },
}

impl Write {
    /// The gRPC method this write serves, for logs.
    pub fn method(&self) -> &'static str {
        match self {
            Write::CreatePipeline(_) => "CreatePipeline",
            Write::UpdatePipeline { .. } => "UpdatePipeline",
            Write::DeletePipeline { .. } => "DeletePipeline",
            Write::SetEnabled { enabled: true, .. } => "EnablePipeline",
            Write::SetEnabled { enabled: false, .. } => "DisablePipeline",
            Write::Register(_) => "Register",
            Write::Deregister { .. } => "Deregister",
        }
    }
}

/// What applying a write answered: the router's refusal message, or the result.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub enum Outcome {
    /// A blank or membership entry.
    #[default]
    None,
    Created(String),
    Version(u64),
    Deleted,
    /// Records still buffered in an enabled or disabled pipeline.
    Buffered(u64),
    Registered(#[serde(with = "proto_bytes")] RegisterResponse),
    /// Whether the service was registered.
    Deregistered(bool),
    Refused(String),
}

/// Serde for a protobuf message as its encoded bytes.
pub mod proto_bytes {
    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<M: prost::Message, S: Serializer>(
        message: &M,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(&message.encode_to_vec())
    }

    pub fn deserialize<'de, M: prost::Message + Default, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<M, D::Error> {
        let bytes = Vec::<u8>::deserialize(deserializer)?;
        M::decode(bytes.as_slice()).map_err(D::Error::custom)
    }
}

//! The API server's audit log as a request counter: every request but
//! watches is logged with its verb, resource and user (the control plane's
//! audit policy), so the operator's requests can be counted by kind.

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;

#[derive(serde::Deserialize)]
struct Entry {
    verb: String,
    user: User,
    #[serde(rename = "objectRef", default)]
    object: Option<ObjectRef>,
}

#[derive(serde::Deserialize)]
struct User {
    username: String,
}

#[derive(serde::Deserialize)]
struct ObjectRef {
    #[serde(default)]
    resource: String,
    #[serde(default)]
    subresource: String,
}

/// Requests of one user, by `"<verb> <resource>[/<subresource>]"`.
#[derive(Clone, Debug, Default)]
pub struct Requests(pub BTreeMap<String, u64>);

impl Requests {
    pub fn writes(&self) -> u64 {
        self.0.iter().filter(|(key, _)| !is_read(key)).map(|(_, n)| n).sum()
    }

    pub fn reads(&self) -> u64 {
        self.0.iter().filter(|(key, _)| is_read(key)).map(|(_, n)| n).sum()
    }

    /// The requests whose verb is `get` of a single object (not a list).
    pub fn gets(&self) -> u64 {
        self.0.iter().filter(|(key, _)| key.starts_with("get ")).map(|(_, n)| n).sum()
    }

    /// The writes, as `"<count> <verb> <resource>"`, comma separated.
    pub fn describe_writes(&self) -> String {
        let writes: Vec<String> =
            self.0.iter().filter(|(key, _)| !is_read(key)).map(|(key, n)| format!("{n} {key}")).collect();
        if writes.is_empty() { "none".into() } else { writes.join(", ") }
    }
}

fn is_read(key: &str) -> bool {
    key.starts_with("get ") || key.starts_with("list ")
}

/// Reads the audit log from a remembered position on.
pub struct AuditLog {
    path: PathBuf,
    offset: u64,
}

impl AuditLog {
    /// Positioned at the log's current end: counts start now.
    pub fn from_now(path: PathBuf) -> AuditLog {
        let offset = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        AuditLog { path, offset }
    }

    /// The requests `user` made since the last call (or since `from_now`).
    pub fn take(&mut self, user: &str) -> Requests {
        let mut text = String::new();
        if let Ok(mut file) = std::fs::File::open(&self.path) {
            let _ = file.seek(SeekFrom::Start(self.offset));
            let _ = file.read_to_string(&mut text);
        }
        // Only whole lines; a line still being written is read next time.
        let complete = text.rfind('\n').map_or(0, |end| end + 1);
        self.offset += complete as u64;
        let mut requests = Requests::default();
        for line in text[..complete].lines() {
            let Ok(entry) = serde_json::from_str::<Entry>(line) else { continue };
            if entry.user.username != user {
                continue;
            }
            let resource = match entry.object {
                Some(o) if o.subresource.is_empty() => o.resource,
                Some(o) => format!("{}/{}", o.resource, o.subresource),
                None => "(none)".into(),
            };
            *requests.0.entry(format!("{} {resource}", entry.verb)).or_default() += 1;
        }
        requests
    }
}

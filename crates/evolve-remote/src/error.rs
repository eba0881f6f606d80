use evolve_core::GenerateError;

#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    /// Nothing answered: wrong address, server not started, firewall.
    #[error("cannot reach {base}: {reason}")]
    Unreachable { base: String, reason: String },
    /// The server answered with an error status; `message` is its own explanation when it gave one.
    #[error("{url} answered HTTP {status}: {message}")]
    Status {
        url: String,
        status: u16,
        message: String,
    },
    /// The server answered 2xx with something that is not the expected JSON.
    #[error("{url} sent malformed JSON: {reason}")]
    Malformed { url: String, reason: String },
    #[error("{url}: no answer within {secs} s")]
    Timeout { url: String, secs: u64 },
    #[error("{url}: not finished within {secs} s (the whole request's deadline)")]
    Deadline { url: String, secs: u64 },
    #[error("{url}: the response is over {limit} bytes; stopped reading")]
    TooLarge { url: String, limit: u64 },
    #[error("{url}: {reason}")]
    Transport { url: String, reason: String },
    #[error("invalid server address {0:?}: expected https://host[:port] or http://host:port")]
    BadAddress(String),
    #[error(
        "refusing to send an API key in clear to {0}: use https:// (plain http:// is for a server on this machine)"
    )]
    KeyInClear(String),
}

impl From<RemoteError> for GenerateError {
    fn from(e: RemoteError) -> Self {
        GenerateError::Engine(Box::new(e))
    }
}

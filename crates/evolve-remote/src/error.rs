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
    #[error("{url}: {reason}")]
    Transport { url: String, reason: String },
    #[error(
        "invalid server address {0:?}: expected http://host:port (https needs a TLS-terminating proxy)"
    )]
    BadAddress(String),
}

impl From<RemoteError> for GenerateError {
    fn from(e: RemoteError) -> Self {
        GenerateError::Engine(Box::new(e))
    }
}

//! Parse errors. Each variant names the fault so a 400/399 Warning can say what was wrong.

/// Why a message, header or URI was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("empty message")]
    Empty,
    #[error("message of {size} bytes exceeds the {max}-byte limit")]
    TooLarge { size: usize, max: usize },
    #[error("line longer than {max} bytes")]
    LineTooLong { max: usize },
    #[error("more than {max} header fields")]
    TooManyHeaders { max: usize },
    #[error("malformed start line: {0}")]
    InvalidStartLine(&'static str),
    #[error("unsupported SIP version (only SIP/2.0)")]
    UnsupportedVersion,
    #[error("invalid status code (must be 3 digits, 100-699)")]
    InvalidStatus,
    #[error("invalid method")]
    InvalidMethod,
    #[error("malformed header line: {0}")]
    InvalidHeaderLine(&'static str),
    #[error("header section not terminated by an empty line")]
    MissingHeaderTerminator,
    /// NUL and other control bytes (RFC 3261 25.1 allows only HTAB, and CRLF as line ends): a
    /// header value holding one would reach logs, call records and the other leg.
    #[error("control character 0x{byte:02x} in the {place}")]
    ControlCharacter { byte: u8, place: &'static str },
    #[error("header section is not valid UTF-8")]
    NotUtf8,
    #[error("invalid Content-Length")]
    InvalidContentLength,
    #[error("conflicting Content-Length values")]
    ConflictingContentLength,
    #[error("missing Content-Length (required on stream transports)")]
    MissingContentLength,
    #[error("Content-Length {declared} larger than body {actual}")]
    BodyTooShort { declared: usize, actual: usize },
    #[error("invalid Request-URI: {0}")]
    InvalidRequestUri(&'static str),
    #[error("invalid URI: {0}")]
    InvalidUri(&'static str),
    #[error("missing {0} header")]
    MissingHeader(&'static str),
    #[error("multiple {0} headers")]
    DuplicateHeader(&'static str),
    #[error("invalid {header} header: {reason}")]
    InvalidHeader { header: &'static str, reason: &'static str },
    #[error("invalid CSeq: method does not match request method")]
    CSeqMethodMismatch,
    #[error("not a request")]
    NotARequest,
    #[error("not a response")]
    NotAResponse,
}

impl ParseError {
    /// Text for the warn-text of a `399` Warning header: the Display text with anything that
    /// could break a quoted-string (quotes, backslashes, control characters) replaced.
    pub fn warning_text(&self) -> String {
        crate::build::warn_text(&self.to_string())
    }

    pub(crate) fn header(header: &'static str, reason: &'static str) -> ParseError {
        ParseError::InvalidHeader { header, reason }
    }
}

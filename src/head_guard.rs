//! Checks each request head before actix-http parses it, so that what the
//! HTTP layer would refuse with an empty body gets the contract's JSON error.
//!
//! actix-http answers an oversized head (`431`), a malformed one (`400`) and a
//! head that is slow to arrive (`408`) from inside its dispatcher, with no body
//! and no hook. [`HeadGuard`] sits between the socket and actix-http: it holds
//! back each head until it is complete, checks it (size, URL length, framing),
//! and passes it on unchanged when it is sound. When it is not, the guard hands
//! actix-http a request for [`REJECTED_PATH`] instead, with `connection: close`;
//! the application answers it with the JSON error, in order behind any earlier
//! pipelined response, and the connection closes.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_codec::Decoder;
use actix_http::ServiceConfig;
use actix_http::h1::{Codec, MessageType};
use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// The route a refused head is replaced by; its last segment is the error code.
pub const REJECTED_PATH: &str = "/_presence/rejected";

/// The most bytes a request head (request line and headers) may take.
pub const MAX_HEAD_BYTES: usize = 32 * 1024;
/// The most bytes the request target (path and query) may take.
pub const MAX_URI_BYTES: usize = 8 * 1024;
/// The most header lines a request may carry.
const MAX_HEADERS: usize = 64;
/// How much is read from the socket at a time while a head is incomplete.
const READ_CHUNK: usize = 8 * 1024;

/// Why a head was refused: the code of the contract's error, which the rejected route turns into JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The request line or a header is not HTTP/1.x, or the body's framing is unusable.
    Malformed,
    /// The request target is longer than [`MAX_URI_BYTES`].
    UriTooLong,
    /// The head is larger than [`MAX_HEAD_BYTES`] or has too many headers.
    HeadersTooLarge,
    /// `GET /api/status?ids=` with more ids than it takes, too long to pass on.
    TooManyIds,
    /// The head did not arrive within the request timeout.
    Timeout,
}

impl Refusal {
    /// The last path segment of the rejected route for this refusal.
    pub fn code(self) -> &'static str {
        match self {
            Self::Malformed => "INVALID_BODY",
            Self::UriTooLong => "URI_TOO_LONG",
            Self::HeadersTooLarge => "HEADERS_TOO_LARGE",
            Self::TooManyIds => "TOO_MANY_IDS",
            Self::Timeout => "REQUEST_TIMEOUT",
        }
    }
}

enum State {
    /// Collecting a head; nothing of it has been passed on yet.
    Head,
    /// Passing on this many more bytes of a body.
    Body(u64),
    /// A chunked body: framing is left to actix-http for the rest of the connection.
    Transparent,
    /// A refusal was handed on; nothing more is read.
    Refused,
}

/// A socket whose request heads are checked before actix-http reads them.
pub struct HeadGuard<S> {
    inner: S,
    state: State,
    /// Bytes read from the socket and not yet handed on.
    buffer: Vec<u8>,
    /// Where the socket is read into: allocated once per connection, so no
    /// read pays for clearing fresh memory.
    scratch: Box<[u8]>,
    /// How many bytes at the front of `buffer` are cleared to be handed on.
    cleared: usize,
    /// The socket reached its end.
    eof: bool,
    timeout: Duration,
    /// When the head being collected must be complete; armed while a head is awaited.
    deadline: Pin<Box<Sleep>>,
    /// Whether `deadline` applies: for the first head, and for any head once its first byte came.
    deadline_armed: bool,
    max_ids_in_query: usize,
    /// actix-http's settings, for checking heads with its own parser (one per worker, shared).
    http: ServiceConfig,
}

impl<S> HeadGuard<S> {
    /// Guards `inner`; its first head must be complete within `timeout`.
    ///
    /// `http` is the worker's actix-http configuration (cheap to clone).
    pub fn new(inner: S, timeout: Duration, max_ids_in_query: usize, http: ServiceConfig) -> Self {
        Self {
            inner,
            state: State::Head,
            buffer: Vec::new(),
            scratch: Box::default(),
            cleared: 0,
            eof: false,
            timeout,
            deadline: Box::pin(tokio::time::sleep(timeout)),
            deadline_armed: true,
            max_ids_in_query,
            http,
        }
    }

    /// The socket underneath.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Hands on up to `out`'s room of the cleared bytes.
    fn hand_on(&mut self, out: &mut ReadBuf<'_>) {
        let count = self.cleared.min(out.remaining());
        out.put_slice(&self.buffer[..count]);
        self.buffer.drain(..count);
        self.cleared -= count;
    }

    /// Decides what the buffered bytes are, clearing what may be handed on.
    fn inspect(&mut self) {
        loop {
            match self.state {
                State::Refused => return,
                State::Transparent => {
                    self.cleared = self.buffer.len();
                    return;
                }
                State::Body(remaining) => {
                    let available = self.buffer.len() - self.cleared;
                    let take = usize::try_from(remaining)
                        .unwrap_or(usize::MAX)
                        .min(available);
                    self.cleared += take;
                    let left = remaining - take as u64;
                    if left > 0 {
                        self.state = State::Body(left);
                        return;
                    }
                    self.state = State::Head;
                    self.deadline_armed = false;
                }
                State::Head => {
                    if self.buffer.len() == self.cleared {
                        return;
                    }
                    if !self.deadline_armed {
                        self.arm_deadline();
                    }
                    match check_head(
                        &self.buffer[self.cleared..],
                        self.max_ids_in_query,
                        &self.http,
                    ) {
                        HeadCheck::Incomplete => return,
                        HeadCheck::Refused(refusal) => {
                            self.refuse(refusal);
                            return;
                        }
                        HeadCheck::Sound { length, body } => {
                            self.cleared += length;
                            self.state = match body {
                                Framing::Length(0) => State::Head,
                                Framing::Length(bytes) => State::Body(bytes),
                                Framing::Chunked => State::Transparent,
                            };
                            self.deadline_armed = false;
                        }
                    }
                }
            }
        }
    }

    fn arm_deadline(&mut self) {
        self.deadline.as_mut().reset(Instant::now() + self.timeout);
        self.deadline_armed = true;
    }

    /// Replaces everything not yet handed on by a request for the rejected route.
    fn refuse(&mut self, refusal: Refusal) {
        self.buffer.truncate(self.cleared);
        self.buffer.extend_from_slice(
            format!(
                "GET {REJECTED_PATH}/{} HTTP/1.1\r\nhost: presence\r\nconnection: close\r\ncontent-length: 0\r\n\r\n",
                refusal.code()
            )
            .as_bytes(),
        );
        self.cleared = self.buffer.len();
        self.state = State::Refused;
    }
}

enum Framing {
    Length(u64),
    /// Chunked, or running to the end of the connection: actix-http frames it.
    Chunked,
}

enum HeadCheck {
    Incomplete,
    Refused(Refusal),
    Sound { length: usize, body: Framing },
}

/// Checks the head at the start of `bytes`: complete and sound, incomplete, or refused.
fn check_head(bytes: &[u8], max_ids_in_query: usize, http: &ServiceConfig) -> HeadCheck {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    let parsed = request.parse(bytes);
    let target_len = request.path.map(str::len);
    if let Some(path) = request.path
        && path.len() > MAX_URI_BYTES
    {
        return HeadCheck::Refused(too_long_target(path.as_bytes(), max_ids_in_query));
    }
    match parsed {
        Ok(httparse::Status::Partial) => {
            if bytes.len() <= MAX_HEAD_BYTES {
                return HeadCheck::Incomplete;
            }
            // Too long to pass on: the request line or the headers?
            match target_len {
                Some(_) => HeadCheck::Refused(Refusal::HeadersTooLarge),
                None => {
                    let target = bytes.split(|byte| *byte == b' ').nth(1).unwrap_or_default();
                    HeadCheck::Refused(too_long_target(target, max_ids_in_query))
                }
            }
        }
        Ok(httparse::Status::Complete(length)) => {
            if length > MAX_HEAD_BYTES {
                return HeadCheck::Refused(Refusal::HeadersTooLarge);
            }
            // Whatever else actix-http would refuse (a target that is no URI,
            // HTTP/1.1 without Host, repeated Host...), by its own parser on a
            // copy; unless the head is plainly one it takes, as nearly every
            // head is (its parse was a third of a `/healthz` request's instructions).
            if !plainly_sound(&request) {
                let mut codec = Codec::new(http.clone());
                if !matches!(
                    codec.decode(&mut BytesMut::from(&bytes[..length])),
                    Ok(Some(_))
                ) {
                    return HeadCheck::Refused(Refusal::Malformed);
                }
                if codec.message_type() == MessageType::Stream {
                    // CONNECT, or an upgrade: the body runs to the end of the connection.
                    return HeadCheck::Sound {
                        length,
                        body: Framing::Chunked,
                    };
                }
            }
            match framing(request.headers) {
                Some(body) => HeadCheck::Sound { length, body },
                None => HeadCheck::Refused(Refusal::Malformed),
            }
        }
        Err(httparse::Error::TooManyHeaders) => HeadCheck::Refused(Refusal::HeadersTooLarge),
        Err(_) => HeadCheck::Refused(Refusal::Malformed),
    }
}

/// Whether actix-http certainly takes this head, as a request with no upgrade:
/// HTTP/1.1, a common method, an origin-form target of plain characters, one
/// `Host`, at most one `Content-Length`, and no `Transfer-Encoding` or
/// `Upgrade`. (`framing` still checks the `Content-Length`.) Any other head is
/// checked by actix-http's own parser.
fn plainly_sound(request: &httparse::Request<'_, '_>) -> bool {
    const METHODS: [&str; 7] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];
    let plain_target = request.path.is_some_and(|path| {
        path.starts_with('/')
            && path
                .bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/?%".contains(&byte))
    });
    if request.version != Some(1)
        || !request
            .method
            .is_some_and(|method| METHODS.contains(&method))
        || !plain_target
    {
        return false;
    }
    let (mut hosts, mut lengths) = (0, 0);
    for header in request.headers.iter() {
        let name = header.name;
        if name.eq_ignore_ascii_case("host") {
            hosts += 1;
        } else if name.eq_ignore_ascii_case("content-length") {
            lengths += 1;
        } else if name.eq_ignore_ascii_case("transfer-encoding")
            || name.eq_ignore_ascii_case("upgrade")
        {
            return false;
        }
    }
    hosts == 1 && lengths <= 1
}

/// A request target over the limit: too many ids for a batch read, else too long.
fn too_long_target(target: &[u8], max_ids_in_query: usize) -> Refusal {
    let ids = target
        .strip_prefix(b"/api/status?")
        .and_then(|query| {
            query
                .split(|byte| *byte == b'&')
                .find_map(|pair| pair.strip_prefix(b"ids="))
        })
        .map(|ids| ids.iter().filter(|byte| **byte == b',').count() + 1);
    match ids {
        Some(count) if count > max_ids_in_query => Refusal::TooManyIds,
        _ => Refusal::UriTooLong,
    }
}

/// How the body after a head is framed; `None` when the framing headers make no sense.
///
/// `Content-Length` must be digits and agree wherever it is repeated; with
/// `Transfer-Encoding` it may not appear at all (request smuggling), and the
/// only transfer coding taken is `chunked`.
fn framing(headers: &[httparse::Header<'_>]) -> Option<Framing> {
    let mut length: Option<u64> = None;
    let mut chunked = false;
    for header in headers {
        if header.name.eq_ignore_ascii_case("content-length") {
            let text = std::str::from_utf8(header.value).ok()?.trim();
            if text.is_empty() || !text.bytes().all(|byte| byte.is_ascii_digit()) {
                return None;
            }
            let value: u64 = text.parse().ok()?;
            if length.is_some_and(|earlier| earlier != value) {
                return None;
            }
            length = Some(value);
        } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
            let text = std::str::from_utf8(header.value).ok()?.trim();
            if chunked || !text.eq_ignore_ascii_case("chunked") {
                return None;
            }
            chunked = true;
        }
    }
    match (length, chunked) {
        (Some(_), true) => None,
        (_, true) => Some(Framing::Chunked),
        (length, false) => Some(Framing::Length(length.unwrap_or(0))),
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for HeadGuard<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.cleared > 0 {
                this.hand_on(out);
                return Poll::Ready(Ok(()));
            }
            if matches!(this.state, State::Refused) {
                // The substitute request says `connection: close`: actix-http
                // answers it and closes; reading on would only drop that answer.
                return Poll::Pending;
            }
            if this.eof {
                // The peer is gone: what is left of a head can never complete.
                this.buffer.clear();
                return Poll::Ready(Ok(()));
            }
            if matches!(this.state, State::Transparent) && this.buffer.is_empty() {
                return Pin::new(&mut this.inner).poll_read(cx, out);
            }
            if this.scratch.is_empty() {
                this.scratch = vec![0; READ_CHUNK].into_boxed_slice();
            }
            let mut chunk = ReadBuf::new(&mut this.scratch);
            let read = Pin::new(&mut this.inner).poll_read(cx, &mut chunk);
            let filled = chunk.filled().len();
            this.buffer.extend_from_slice(&this.scratch[..filled]);
            match read {
                Poll::Ready(Ok(())) if filled == 0 => this.eof = true,
                Poll::Ready(Ok(())) => this.inspect(),
                Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
                Poll::Pending => {
                    let awaiting_head = matches!(this.state, State::Head) && this.deadline_armed;
                    if awaiting_head && this.deadline.as_mut().poll(cx).is_ready() {
                        this.refuse(Refusal::Timeout);
                        continue;
                    }
                    return Poll::Pending;
                }
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for HeadGuard<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bytes: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, bytes)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buffers: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, buffers)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(head: &str) -> Result<usize, Refusal> {
        // actix-http's configuration runs a clock task: it needs a local task set.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        tokio::task::LocalSet::new().block_on(&runtime, async {
            match check_head(head.as_bytes(), 100, &ServiceConfig::default()) {
                HeadCheck::Incomplete => Ok(0),
                HeadCheck::Refused(refusal) => Err(refusal),
                HeadCheck::Sound { length, .. } => Ok(length),
            }
        })
    }

    #[test]
    fn a_sound_head_passes_whole() {
        let head = "PUT /api/status HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\n";
        assert_eq!(check(head), Ok(head.len()));
        assert_eq!(
            check("GET /healthz HTTP/1.1\r\nhost: x"),
            Ok(0),
            "incomplete"
        );
    }

    #[test]
    fn bad_framing_is_malformed() {
        for head in [
            "PUT / HTTP/1.1\r\nhost: x\r\ncontent-length: abc\r\n\r\n",
            "PUT / HTTP/1.1\r\nhost: x\r\ncontent-length: -1\r\n\r\n",
            "PUT / HTTP/1.1\r\nhost: x\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\n",
            "PUT / HTTP/1.1\r\nhost: x\r\ncontent-length: 1\r\ntransfer-encoding: chunked\r\n\r\n",
            "PUT / HTTP/1.1\r\nhost: x\r\ntransfer-encoding: gzip\r\n\r\n",
            "PUT / HTTP/1.1\r\nhost: x\r\ncontent-length: 99999999999999999999999\r\n\r\n",
            "NOT HTTP AT ALL\r\n\r\n",
            "GET /healthz HTTP/1.1\r\n\r\n",
            "GET /a\x7fb HTTP/1.1\r\nhost: x\r\n\r\n",
            "PUT / HTTP/1.0\r\ntransfer-encoding: chunked\r\n\r\n",
            "POST /api/status HTTP/1.0\r\n\r\n",
            "GET / HTTP/1.1\r\nhost: a\r\nhost: b\r\n\r\n",
        ] {
            assert_eq!(check(head), Err(Refusal::Malformed), "{head:?}");
        }
    }

    /// Whether the head skips actix-http's parser, and what actix-http makes of it.
    fn plain_and_taken(head: &str) -> (bool, bool) {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut request = httparse::Request::new(&mut headers);
        assert!(
            request
                .parse(head.as_bytes())
                .is_ok_and(|s| s.is_complete()),
            "{head:?}"
        );
        let plain = plainly_sound(&request);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let taken = tokio::task::LocalSet::new().block_on(&runtime, async {
            let mut codec = Codec::new(ServiceConfig::default());
            matches!(codec.decode(&mut BytesMut::from(head)), Ok(Some(_)))
                && codec.message_type() != MessageType::Stream
        });
        (plain, taken)
    }

    #[test]
    fn only_heads_actix_takes_skip_its_parser() {
        for head in [
            "POST /api/status/query HTTP/1.1\r\nhost: x\r\nauthorization: Bearer a.b.c\r\ncontent-type: application/json\r\nif-none-match: \"00ff\"\r\ncontent-length: 20\r\n\r\n",
            "GET /api/status?ids=0b6c3f1e-8f4a-4e55-9a2b-1c2d3e4f5a6b,x%20y HTTP/1.1\r\nHost: x\r\n\r\n",
            "DELETE /api/status/devices/tab-1 HTTP/1.1\r\nhost: x\r\nconnection: keep-alive\r\n\r\n",
        ] {
            assert_eq!(plain_and_taken(head), (true, true), "{head:?}");
        }
        // Each differs from a plain head in one thing; whatever actix-http
        // makes of it, the guard asks actix-http.
        for head in [
            "GET / HTTP/1.0\r\nhost: x\r\n\r\n",
            "CONNECT x:443 HTTP/1.1\r\nhost: x\r\n\r\n",
            "BREW / HTTP/1.1\r\nhost: x\r\n\r\n",
            "GET http://x/ HTTP/1.1\r\nhost: x\r\n\r\n",
            "GET * HTTP/1.1\r\nhost: x\r\n\r\n",
            "GET /a{b} HTTP/1.1\r\nhost: x\r\n\r\n",
            "GET /a#b HTTP/1.1\r\nhost: x\r\n\r\n",
            "GET / HTTP/1.1\r\n\r\n",
            "GET / HTTP/1.1\r\nhost: a\r\nHOST: b\r\n\r\n",
            "PUT / HTTP/1.1\r\nhost: x\r\ncontent-length: 1\r\ncontent-length: 1\r\n\r\n",
            "PUT / HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n",
            "GET / HTTP/1.1\r\nhost: x\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\n",
        ] {
            assert!(!plain_and_taken(head).0, "{head:?}");
        }
    }

    proptest::proptest! {
        #[test]
        fn a_head_that_skips_actix_parser_is_one_it_takes(
            method in proptest::sample::select(vec!["GET", "PUT", "POST", "DELETE", "CONNECT", "get", "X"]),
            target in "[/a-z*{}\"|^`<>\\%:@?#=&+-]{1,12}",
            version in proptest::sample::select(vec!["HTTP/1.1", "HTTP/1.0"]),
            headers in proptest::collection::vec(proptest::sample::select(vec![
                "host: x", "Host: y", "content-length: 3", "Content-Length: 03", "content-length: +3",
                "content-length: 1", "transfer-encoding: chunked", "transfer-encoding: identity",
                "upgrade: websocket", "connection: upgrade", "connection: close",
                "expect: 100-continue", "x-other: \u{e9}",
            ]), 0..5),
        ) {
            let head = format!("{method} {target} {version}\r\n{}\r\n",
                headers.iter().map(|header| format!("{header}\r\n")).collect::<String>());
            let mut parsed = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut request = httparse::Request::new(&mut parsed);
            if request.parse(head.as_bytes()).is_ok_and(|status| status.is_complete()) {
                let (plain, taken) = plain_and_taken(&head);
                proptest::prop_assert!(!plain || taken, "{head:?}");
            }
        }
    }

    #[test]
    fn oversized_parts_are_named() {
        let long_path = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(MAX_URI_BYTES));
        assert_eq!(check(&long_path), Err(Refusal::UriTooLong));
        let unfinished_line = format!("GET /{}", "a".repeat(MAX_HEAD_BYTES));
        assert_eq!(check(&unfinished_line), Err(Refusal::UriTooLong));
        let big_header = format!("GET / HTTP/1.1\r\nx: {}", "a".repeat(MAX_HEAD_BYTES));
        assert_eq!(check(&big_header), Err(Refusal::HeadersTooLarge));
        let many = format!(
            "GET / HTTP/1.1\r\n{}\r\n",
            "x: y\r\n".repeat(MAX_HEADERS + 1)
        );
        assert_eq!(check(&many), Err(Refusal::HeadersTooLarge));
    }

    #[test]
    fn too_many_ids_are_counted_as_sent() {
        let ids = vec!["0b6c3f1e-8f4a-4e55-9a2b-1c2d3e4f5a6b"; 10_000].join(",");
        let head = format!("GET /api/status?ids={ids} HTTP/1.1\r\n\r\n");
        assert_eq!(check(&head), Err(Refusal::TooManyIds));
        assert_eq!(
            check(&head[..MAX_HEAD_BYTES + 10]),
            Err(Refusal::TooManyIds)
        );
    }
}

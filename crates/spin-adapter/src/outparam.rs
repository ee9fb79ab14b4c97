//! Sending a response through Spin's `ResponseOutparam` with its body written
//! piece by piece as it is read, so serving a 20 MB original never holds it
//! whole in the instance's memory.

use darkroom_core::ports::PortError;
use spin_sdk::http::{OutgoingBody, OutgoingResponse, Response, ResponseOutparam};

/// wasi:io output streams accept at most 4096 bytes per blocking write.
const WRITE_BYTES: usize = 4096;

/// Sends `head` (status and headers; its body is ignored), then each piece
/// of `body`. When a piece cannot be read the body is abandoned unfinished,
/// which makes the host abort the response instead of passing off a
/// truncated file as complete; the error goes to the log.
pub fn send(
    out: ResponseOutparam,
    head: Response,
    body: impl IntoIterator<Item = Result<Vec<u8>, PortError>>,
) {
    let Some(outgoing) = start(out, head) else {
        return;
    };
    let Ok(stream) = outgoing.write() else {
        eprintln!("darkroom: the response body cannot be written");
        return;
    };
    for piece in body {
        let piece = match piece {
            Ok(piece) => piece,
            Err(e) => {
                eprintln!("darkroom: aborting the response: {e}");
                return;
            }
        };
        for part in piece.chunks(WRITE_BYTES) {
            if let Err(e) = stream.blocking_write_and_flush(part) {
                // The client went away; nothing left to do.
                eprintln!("darkroom: the client stopped reading: {e:?}");
                return;
            }
        }
    }
    drop(stream);
    if let Err(e) = OutgoingBody::finish(outgoing, None) {
        eprintln!("darkroom: the response could not be finished: {e:?}");
    }
}

/// Sends a response whose body is already in memory. An empty one is sent
/// without a body resource at all: wasi-http holds a body resource to the
/// `Content-Length` header (and aborts the response when fewer bytes were
/// written), while a response without one goes out with its headers as they
/// are, so the answer to a HEAD keeps the length of the GET.
pub fn send_buffered(out: ResponseOutparam, mut response: Response) {
    let body = std::mem::take(response.body_mut());
    if body.is_empty() {
        if let Some(outgoing) = outgoing(response) {
            out.set(outgoing);
        }
        return;
    }
    send(out, response, Some(Ok(body)));
}

fn start(out: ResponseOutparam, head: Response) -> Option<OutgoingBody> {
    let outgoing = outgoing(head)?;
    let body = outgoing.body().ok();
    out.set(outgoing);
    body
}

/// `response`'s status and headers (its body is dropped).
fn outgoing(mut response: Response) -> Option<OutgoingResponse> {
    drop(std::mem::take(response.body_mut()));
    match response.try_into() {
        Ok(outgoing) => Some(outgoing),
        Err(e) => {
            eprintln!("darkroom: the response cannot be built: {e}");
            None
        }
    }
}

//! One end of the edge <-> worker control socket: a non-blocking `SOCK_SEQPACKET` Unix socket (message
//! boundaries kept, end of stream seen when the other process goes) driven by the Tokio reactor, with
//! sockets passed as `SCM_RIGHTS`.

use std::io::{self, IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{BorrowedFd, OwnedFd};

use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags, SendAncillaryBuffer, SendAncillaryMessage,
    SendFlags, Shutdown,
};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

use super::wire::{MAX_FRAME, START_FDS};

/// A control socket end.
#[derive(Debug)]
pub(crate) struct Control {
    fd: AsyncFd<OwnedFd>,
}

/// One message as received.
#[derive(Debug)]
pub(crate) struct Received {
    pub(crate) frame: Vec<u8>,
    /// Descriptors that came with it (closed when dropped).
    pub(crate) fds: Vec<OwnedFd>,
}

/// A connected pair of control sockets, close-on-exec (the worker's end is passed as its standard
/// input, which clears the flag on that copy only).
pub(crate) fn pair() -> io::Result<(OwnedFd, OwnedFd)> {
    use rustix::net::{AddressFamily, SocketFlags, SocketType};
    Ok(rustix::net::socketpair(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC,
        None,
    )?)
}

impl Control {
    /// Registers `fd` (made non-blocking) with the reactor. Must be called inside a Tokio runtime.
    pub(crate) fn new(fd: OwnedFd) -> io::Result<Control> {
        rustix::io::ioctl_fionbio(&fd, true)?;
        Ok(Control {
            fd: crate::socket::register(fd, Interest::READABLE | Interest::WRITABLE)?,
        })
    }

    /// Sends one message, with up to [`START_FDS`] descriptors. Waits while the socket's buffer is full.
    pub(crate) async fn send(&self, frame: &[u8], fds: &[BorrowedFd<'_>]) -> io::Result<()> {
        loop {
            let mut guard = self.fd.writable().await?;
            let sent = guard.try_io(|fd| {
                let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(START_FDS))];
                let mut control = SendAncillaryBuffer::new(&mut space);
                if !fds.is_empty() && !control.push(SendAncillaryMessage::ScmRights(fds)) {
                    return Err(io::Error::new(io::ErrorKind::InvalidInput, "too many descriptors"));
                }
                rustix::net::sendmsg(fd.get_ref(), &[IoSlice::new(frame)], &mut control, SendFlags::NOSIGNAL)
                    .map_err(io::Error::from)
            });
            match sent {
                Ok(r) => return r.map(drop),
                Err(_would_block) => continue,
            }
        }
    }

    /// The next message; `None` once the other end has closed. A message longer than any of ours comes
    /// back empty (the decoder rejects it).
    pub(crate) async fn recv(&self) -> io::Result<Option<Received>> {
        loop {
            let mut guard = self.fd.readable().await?;
            let got = guard.try_io(|fd| {
                let mut buf = [0u8; MAX_FRAME + 1];
                let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(START_FDS))];
                let mut control = RecvAncillaryBuffer::new(&mut space);
                let msg = rustix::net::recvmsg(
                    fd.get_ref(),
                    &mut [IoSliceMut::new(&mut buf)],
                    &mut control,
                    RecvFlags::CMSG_CLOEXEC,
                )
                .map_err(io::Error::from)?;
                let mut fds = Vec::new();
                for m in control.drain() {
                    if let RecvAncillaryMessage::ScmRights(rights) = m {
                        fds.extend(rights);
                    }
                }
                if msg.bytes == 0 && fds.is_empty() {
                    return Ok(None);
                }
                let oversized = msg.bytes > MAX_FRAME || msg.flags.contains(ReturnFlags::TRUNC);
                let len = if oversized { 0 } else { msg.bytes };
                Ok(Some(Received {
                    frame: buf[..len].to_vec(),
                    fds,
                }))
            });
            match got {
                Ok(r) => return r,
                Err(_would_block) => continue,
            }
        }
    }

    /// No more messages from this end: the other one reads end of stream.
    pub(crate) fn shutdown_write(&self) {
        let _ = rustix::net::shutdown(self.fd.get_ref(), Shutdown::Write);
    }
}

//! Randomness handed to call control, like time: tags, Call-IDs, branches and record ids are drawn from
//! an [`Entropy`] the driver gives the controller, so call control reads no generator of its own and a
//! test can make every id it mints repeatable.
//!
//! The real source is the thread's CSPRNG: these ids are what an outsider must guess to speak inside one
//! of our dialogs or answer one of our transactions (RFC 3261 19.3), so they must not be predictable.

/// Where call control draws its random bits.
pub trait Entropy: Send {
    fn next_u64(&mut self) -> u64;
}

impl dyn Entropy {
    /// A tag or Call-ID token: 16 hex digits.
    pub fn token(&mut self) -> String {
        sip_core::build::token_of(self.next_u64())
    }

    /// A Via branch: the RFC 3261 magic cookie and 16 hex digits.
    pub fn branch(&mut self) -> String {
        sip_core::build::branch_of(self.next_u64())
    }
}

/// The thread's ChaCha CSPRNG, reseeded from the operating system (`sip_core::build::random_u64`).
#[derive(Debug, Default)]
pub struct OsEntropy;

impl Entropy for OsEntropy {
    fn next_u64(&mut self) -> u64 {
        sip_core::build::random_u64()
    }
}

/// A repeatable source for tests (xorshift64*): the same seed mints the same ids. Never for traffic.
#[derive(Debug)]
pub struct SeededEntropy(u64);

impl SeededEntropy {
    pub fn new(seed: u64) -> Self {
        SeededEntropy(seed | 1)
    }
}

impl Entropy for SeededEntropy {
    fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

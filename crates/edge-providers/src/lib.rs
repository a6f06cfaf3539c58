//! Phone-number providers for oneinbox-edge.
//!
//! The REST API searches, buys and releases numbers through the [`NumberProvider`] trait so it
//! does not care whether the inventory is the embedded offline [`LocalInventory`] or a carrier
//! ([`TwilioProvider`], [`TelnyxProvider`]). Never selling a number twice is the caller's job:
//! it passes the numbers it already owns in [`SearchQuery::exclude`].

mod error;
mod http;
mod local;
mod secret;
mod telnyx;
mod twilio;
mod types;
mod validate;

use std::future::Future;
use std::pin::Pin;

pub use error::ProviderError;
pub use local::{InventoryRange, LocalInventory, MAX_SCAN_PER_SEARCH};
pub use secret::SecretString;
pub use telnyx::{TelnyxConfig, TelnyxConnection, TelnyxOwnedNumber, TelnyxProvider, TELNYX_DEFAULT_BASE_URL};
pub use twilio::{TwilioConfig, TwilioOwnedNumber, TwilioProvider, TwilioTrunk, TWILIO_DEFAULT_BASE_URL};
pub use types::{AvailableNumber, ProviderKind, PurchasedNumber, SearchQuery};
pub use validate::MAX_SEARCH_LIMIT;

/// Boxed `Send` future: keeps [`NumberProvider`] object-safe (`Arc<dyn NumberProvider>`)
/// without pulling in `async-trait`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A source of phone numbers the API can search, purchase from and release to.
pub trait NumberProvider: Send + Sync {
    /// Which provider this is; stored with every purchased number.
    fn kind(&self) -> ProviderKind;

    /// Numbers available for purchase, at most `q.limit`, never one listed in `q.exclude`.
    fn search<'a>(&'a self, q: &'a SearchQuery) -> BoxFuture<'a, Result<Vec<AvailableNumber>, ProviderError>>;

    /// Buys `phone_number` (E.164). The returned `provider_ref` is what `release` needs.
    fn purchase<'a>(&'a self, phone_number: &'a str) -> BoxFuture<'a, Result<PurchasedNumber, ProviderError>>;

    /// Gives a purchased number back to the provider. Releasing a number the provider no
    /// longer has is `Ok` so API retries are idempotent.
    fn release<'a>(&'a self, purchased: &'a PurchasedNumber) -> BoxFuture<'a, Result<(), ProviderError>>;

    /// Whether this provider account holds `phone_number` now (`Some` with the handle
    /// `release` needs) or definitely not (`None`). Used to settle purchases a crash left
    /// unfinished. An `Err` means "cannot tell": the default, for providers without a lookup,
    /// so nothing is ever decided on a guess.
    fn find_owned<'a>(
        &'a self,
        phone_number: &'a str,
    ) -> BoxFuture<'a, Result<Option<PurchasedNumber>, ProviderError>> {
        Box::pin(async move {
            Err(ProviderError::Transport(format!(
                "provider {} cannot look up {phone_number}",
                self.kind()
            )))
        })
    }
}

//! The seam between publishing and delivery, where fan-out across several hub instances
//! plugs in.
//!
//! [`Hub::publish`] validates messages and hands them to the hub's [`Broker`]. The default,
//! [`LocalBroker`], delivers them straight to this process's connections with
//! [`Hub::deliver_local`]. A broker for several instances (Redis, say) sends them to the
//! shared bus instead, and every instance's own subscriber task calls
//! [`Hub::deliver_local`] for what arrives from the bus.

use std::fmt::Debug;

use futures_util::future::BoxFuture;

use crate::error::Error;
use crate::event::{Message, Receipt};
use crate::hub::Hub;

/// Where validated messages go to be delivered.
pub trait Broker: Send + Sync + Debug + 'static {
    /// Publishes `messages`, in order, and says what happened to each.
    fn publish<'a>(
        &'a self,
        hub: &'a Hub,
        messages: Vec<Message>,
    ) -> BoxFuture<'a, Result<Vec<Receipt>, Error>>;
}

/// Delivers to this process's connections only. Needs nothing external.
#[derive(Debug, Default, Clone, Copy)]
pub struct LocalBroker;

impl Broker for LocalBroker {
    fn publish<'a>(
        &'a self,
        hub: &'a Hub,
        messages: Vec<Message>,
    ) -> BoxFuture<'a, Result<Vec<Receipt>, Error>> {
        Box::pin(async move { hub.deliver_local(messages) })
    }
}

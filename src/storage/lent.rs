//! A pooled connection lent to one storage call, closed rather than returned when the call is
//! abandoned.
//!
//! A call is abandoned when its timeout fires or its request goes away. Its connection may then
//! be mid-protocol, or waiting on a server that no longer answers (a network cut leaves the
//! socket open with nobody at the other end). sqlx checks a returned connection with a round
//! trip that has no time limit, so such a connection would hold its pool slot until the kernel
//! gave up on the socket, many minutes later. Closed instead, its slot is free at once.

use std::ops::{Deref, DerefMut};

use sqlx::pool::PoolConnection;

pub(super) struct LentConnection<DB: sqlx::Database, F: FnOnce()> {
    conn: PoolConnection<DB>,
    /// Runs if the call never finished; `None` once it did.
    on_abandon: Option<F>,
}

impl<DB: sqlx::Database, F: FnOnce()> LentConnection<DB, F> {
    pub(super) fn new(conn: PoolConnection<DB>, on_abandon: F) -> Self {
        Self {
            conn,
            on_abandon: Some(on_abandon),
        }
    }

    /// The call got its answer (an error included): the connection goes back to the pool.
    pub(super) fn finish(mut self) {
        self.on_abandon = None;
    }
}

impl<DB: sqlx::Database, F: FnOnce()> Drop for LentConnection<DB, F> {
    fn drop(&mut self) {
        if let Some(on_abandon) = self.on_abandon.take() {
            self.conn.close_on_drop();
            on_abandon();
        }
    }
}

impl<DB: sqlx::Database, F: FnOnce()> Deref for LentConnection<DB, F> {
    type Target = PoolConnection<DB>;

    fn deref(&self) -> &Self::Target {
        &self.conn
    }
}

impl<DB: sqlx::Database, F: FnOnce()> DerefMut for LentConnection<DB, F> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.conn
    }
}

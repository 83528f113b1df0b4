//! A pooled connection lent to one storage call, retired rather than reused when the call is
//! abandoned.
//!
//! A call is abandoned when its timeout fires or its request goes away. Its connection may then
//! be mid-protocol, or waiting on a server that no longer answers (a network cut leaves the
//! socket open with nobody at the other end). Reused, it would hang its next call, and sqlx's
//! pool would check it with a round trip that has no time limit, holding its pool slot until
//! the kernel gave up on the socket, many minutes later. Retired, its slot is free at once.

use std::ops::{Deref, DerefMut};

use sqlx::pool::PoolConnection;

use super::pg_pool::PgPooled;

/// A pooled connection that can be kept from serving again.
pub(super) trait Retire {
    /// Closes the connection now instead of returning it: a transaction it left open (and
    /// the locks that transaction holds) ends with it.
    fn retire(self);
}

impl<DB: sqlx::Database> Retire for PoolConnection<DB> {
    fn retire(mut self) {
        // sqlx bounds this close at 5 s.
        self.close_on_drop();
    }
}

impl Retire for PgPooled {
    fn retire(self) {
        drop(PgPooled::take(self));
    }
}

pub(super) struct LentConnection<C: Retire, F: FnOnce()> {
    /// `Some` from `new` until `finish` or drop takes it.
    conn: Option<C>,
    /// Runs if the call never finished; `None` once it did.
    on_abandon: Option<F>,
}

impl<C: Retire, F: FnOnce()> LentConnection<C, F> {
    pub(super) fn new(conn: C, on_abandon: F) -> Self {
        Self {
            conn: Some(conn),
            on_abandon: Some(on_abandon),
        }
    }

    /// The call got its answer: the connection goes back to the pool, unless `reusable` is
    /// false (the call failed, so the connection may hold a transaction whose rollback was
    /// only queued, or be dead).
    pub(super) fn finish(mut self, reusable: bool) {
        self.on_abandon = None;
        if let Some(conn) = self.conn.take() {
            if reusable {
                drop(conn);
            } else {
                conn.retire();
            }
        }
    }
}

impl<C: Retire, F: FnOnce()> Drop for LentConnection<C, F> {
    fn drop(&mut self) {
        if let Some(on_abandon) = self.on_abandon.take() {
            if let Some(conn) = self.conn.take() {
                conn.retire();
            }
            on_abandon();
        }
    }
}

impl<C: Retire, F: FnOnce()> Deref for LentConnection<C, F> {
    type Target = C;

    fn deref(&self) -> &Self::Target {
        match &self.conn {
            Some(conn) => conn,
            None => unreachable!("only finish and drop take the connection, and both end the loan"),
        }
    }
}

impl<C: Retire, F: FnOnce()> DerefMut for LentConnection<C, F> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        match &mut self.conn {
            Some(conn) => conn,
            None => unreachable!("only finish and drop take the connection, and both end the loan"),
        }
    }
}

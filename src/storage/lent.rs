//! A pooled connection lent to one storage call, retired (closed) rather than reused when the
//! call is abandoned or, on PostgreSQL, fails.
//!
//! A call is abandoned when its timeout fires or its request goes away. Its connection may then
//! be mid-protocol, inside a transaction, or waiting on a server that no longer answers (a
//! network cut leaves the socket open with nobody at the other end). Reused, it would hang its
//! next call or keep its transaction's locks until then; sqlx's pool would check it with a
//! round trip that has no time limit, holding its pool slot until the kernel gave up on the
//! socket, many minutes later. Retired, its session ends and its slot is free at once.

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

pub(super) struct LentConnection<C: Retire> {
    /// `Some` from `new` until `finish` or drop takes it.
    conn: Option<C>,
}

impl<C: Retire> LentConnection<C> {
    pub(super) fn new(conn: C) -> Self {
        Self { conn: Some(conn) }
    }

    /// The call got its answer: the connection goes back to the pool, unless `reusable` is
    /// false (the call failed, so the connection may hold a transaction whose rollback was
    /// only queued, or be dead).
    pub(super) fn finish(mut self, reusable: bool) {
        if let Some(conn) = self.conn.take() {
            if reusable {
                drop(conn);
            } else {
                conn.retire();
            }
        }
    }
}

/// Still lent when dropped: the call was abandoned.
impl<C: Retire> Drop for LentConnection<C> {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            conn.retire();
        }
    }
}

impl<C: Retire> Deref for LentConnection<C> {
    type Target = C;

    fn deref(&self) -> &Self::Target {
        match &self.conn {
            Some(conn) => conn,
            None => unreachable!("only finish and drop take the connection, and both end the loan"),
        }
    }
}

impl<C: Retire> DerefMut for LentConnection<C> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        match &mut self.conn {
            Some(conn) => conn,
            None => unreachable!("only finish and drop take the connection, and both end the loan"),
        }
    }
}

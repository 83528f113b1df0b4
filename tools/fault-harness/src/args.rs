//! Arguments that more than one subcommand takes, declared once and flattened into each.

use clap::Args;

#[derive(Args)]
pub(crate) struct ApiArgs {
    /// The API's published address.
    #[arg(long)]
    pub api_url: String,
}

#[derive(Args)]
pub(crate) struct DbContainerArgs {
    /// The PostgreSQL container.
    #[arg(long, default_value = "task-db")]
    pub db_container: String,
}

/// The role and database that `psql` and `pg_isready` in the PostgreSQL container use.
#[derive(Args)]
pub(crate) struct DbLoginArgs {
    #[arg(long, default_value = "taskuser")]
    pub db_user: String,
    #[arg(long, default_value = "taskmanager")]
    pub db_name: String,
}

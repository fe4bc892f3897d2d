//! The Activity page's reads: the request log with the accounts' labels, totals for the charts,
//! the usage history, and the CSV export. The log is its own file (`activity::db`); labels come
//! from the store at read time.

use super::Service;
use crate::activity::query::{Filter, GroupBy, Totals, UsagePoint};
use crate::activity::report::{self, ActivityPage};
use crate::error::AppError;
use std::path::{Path, PathBuf};

impl Service {
    fn data_dir(&self) -> PathBuf {
        PathBuf::from(self.info().data_dir)
    }

    pub fn activity_page(&self, filter: &Filter, limit: usize) -> Result<ActivityPage, AppError> {
        let accounts = self.store().list_accounts()?;
        Ok(report::page(&self.data_dir(), &accounts, filter, limit)?)
    }

    pub fn activity_totals(&self, filter: &Filter, by: GroupBy) -> Result<Vec<Totals>, AppError> {
        let accounts = self.store().list_accounts()?;
        Ok(report::totals(&self.data_dir(), &accounts, filter, by)?)
    }

    pub fn usage_history(&self, since_ms: i64) -> Result<Vec<UsagePoint>, AppError> {
        Ok(report::usage_history(&self.data_dir(), since_ms)?)
    }

    /// Writes the filtered table to `out` (0600); returns how many rows.
    pub fn export_activity_csv(&self, filter: &Filter, out: &Path) -> Result<usize, AppError> {
        let accounts = self.store().list_accounts()?;
        Ok(report::export_csv(
            &self.data_dir(),
            &accounts,
            filter,
            out,
        )?)
    }
}

pub mod format;
pub mod reader;
pub mod record;
pub mod wal;

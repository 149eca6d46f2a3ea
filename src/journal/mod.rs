pub mod format;
pub mod reader;
pub mod record;
pub mod salvage;
pub mod wal;

//! The content-addressed object store: `objects/ab/cdef…` holds the zstd frame of the exact
//! bytes whose blake3 is `abcdef…`. Check one by hand: `zstd -dc objects/ab/cdef… | b3sum`.

pub mod objects;

pub use objects::ObjectStore;

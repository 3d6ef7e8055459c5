//! The soft token's `[slot.seal]` (being written).

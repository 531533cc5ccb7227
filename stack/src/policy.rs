//! Which destinations are offloaded (`OffloadPolicy`).

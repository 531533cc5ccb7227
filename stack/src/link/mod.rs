//! Links: what the stack sends frames or datagrams through.

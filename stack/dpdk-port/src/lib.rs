//! A DPDK ethernet port for the sluice stack.

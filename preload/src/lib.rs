//! libsluice.so: interposes the BSD socket calls and dispatches them either to
//! the kernel or to the sluice stack.

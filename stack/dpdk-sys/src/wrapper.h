/* What bindgen reads: the public DPDK headers sluice uses, plus our shim. */
#include <rte_eal.h>
#include <rte_dev.h>
#include <rte_errno.h>
#include <rte_lcore.h>
#include <rte_log.h>
#include <rte_ethdev.h>
#include <rte_ether.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>
#include "shim.h"

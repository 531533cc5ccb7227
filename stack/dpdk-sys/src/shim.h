/*
 * Real, linkable functions for DPDK's static inline ones, so that Rust can
 * call them. Each is a one-line forward; the names carry a sluice_ prefix so
 * they never clash with DPDK's own symbols.
 */
#ifndef SLUICE_DPDK_SHIM_H
#define SLUICE_DPDK_SHIM_H

#include <stdint.h>

struct rte_mbuf;
struct rte_mempool;

uint16_t sluice_rte_eth_rx_burst(uint16_t port_id, uint16_t queue_id,
                                 struct rte_mbuf **rx_pkts, uint16_t nb_pkts);
uint16_t sluice_rte_eth_tx_burst(uint16_t port_id, uint16_t queue_id,
                                 struct rte_mbuf **tx_pkts, uint16_t nb_pkts);

struct rte_mbuf *sluice_rte_pktmbuf_alloc(struct rte_mempool *mp);
int sluice_rte_pktmbuf_alloc_bulk(struct rte_mempool *mp,
                                  struct rte_mbuf **mbufs, unsigned count);
void sluice_rte_pktmbuf_free(struct rte_mbuf *m);

void *sluice_rte_pktmbuf_mtod(struct rte_mbuf *m);
uint16_t sluice_rte_pktmbuf_data_len(const struct rte_mbuf *m);
void sluice_rte_pktmbuf_set_data_len(struct rte_mbuf *m, uint16_t len);
uint32_t sluice_rte_pktmbuf_pkt_len(const struct rte_mbuf *m);
void sluice_rte_pktmbuf_set_pkt_len(struct rte_mbuf *m, uint32_t len);
uint16_t sluice_rte_pktmbuf_nb_segs(const struct rte_mbuf *m);
uint16_t sluice_rte_pktmbuf_tailroom(const struct rte_mbuf *m);
char *sluice_rte_pktmbuf_append(struct rte_mbuf *m, uint16_t len);

int sluice_rte_errno(void);
unsigned sluice_rte_lcore_id(void);

#endif

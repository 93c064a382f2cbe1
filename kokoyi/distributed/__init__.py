"""Distributed training on `torch.distributed`: partitions on disk (`partition`), a sharded feature
store fetched with collectives (`store`), sampling over partitions plus halo (`sampler`), and the
multi-process training loop (`train`). The runtime modules never import the compiler."""

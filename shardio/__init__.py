"""The lowest floor: shard files and where they live (atomic writes, checked reading, stats markers,
fingerprints, the data-directory layout, one writer per output folder). `pipeline`, `train` and `annotators` may
import it; it imports none of them."""

package testenv

// Murmur2 is Kafka's hash for keyed records (org.apache.kafka.common.utils.Utils.murmur2),
// written out as the independent reference the partition tests check
// franz-go and kcat against (its vectors are tested in pkg/kafka).
func Murmur2(data []byte) int32 {
	const (
		seed uint32 = 0x9747b28c
		m    uint32 = 0x5bd1e995
		r           = 24
	)
	length := len(data)
	h := seed ^ uint32(length)
	for i := 0; i+4 <= length; i += 4 {
		k := uint32(data[i]) | uint32(data[i+1])<<8 | uint32(data[i+2])<<16 | uint32(data[i+3])<<24
		k *= m
		k ^= k >> r
		k *= m
		h *= m
		h ^= k
	}
	tail := data[length&^3:]
	switch len(tail) {
	case 3:
		h ^= uint32(tail[2]) << 16
		fallthrough
	case 2:
		h ^= uint32(tail[1]) << 8
		fallthrough
	case 1:
		h ^= uint32(tail[0])
		h *= m
	}
	h ^= h >> 13
	h *= m
	h ^= h >> 15
	return int32(h)
}

// PartitionFor is the Java client's default partitioner for keyed records.
func PartitionFor(key string, partitions int32) int32 {
	return (Murmur2([]byte(key)) & 0x7fffffff) % partitions
}

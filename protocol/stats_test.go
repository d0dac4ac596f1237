package protocol

import (
	"encoding/json"
	"reflect"
	"testing"
)

// runcStats is the data of `runc events --stats` from runc 1.1.5 (memory.raw
// shortened), with the tables it left empty filled in the shape of runc's
// types (blkio, throttling, hugetlb, pids.limit, network_interfaces).
const runcStats = `{"cpu":{"usage":{"total":9210112,"percpu":[6947425,2262687],"percpu_kernel":[12000000,4000000],"percpu_user":[0,0],"kernel":0,"user":0},"throttling":{"periods":3,"throttledPeriods":1,"throttledTime":500}},` +
	`"cpuset":{"cpus":[0,1],"cpu_exclusive":0,"mems":[0],"mem_hardwall":0,"mem_exclusive":0,"memory_migrate":0,"memory_spread_page":0,"memory_spread_slab":0,"memory_pressure":0,"sched_load_balance":1,"sched_relax_domain_level":-1},` +
	`"memory":{"cache":557056,"usage":{"limit":9223372036854771712,"usage":1204224,"max":2777088,"failcnt":0},"swap":{"limit":9223372036854771712,"usage":1204224,"max":2777088,"failcnt":0},"kernel":{"limit":9223372036854771712,"usage":286720,"max":622592,"failcnt":0},"kernelTCP":{"limit":9223372036854771712,"failcnt":0},"raw":{"active_anon":4096,"active_file":16384,"cache":557056}},` +
	`"pids":{"current":1,"limit":10},` +
	`"blkio":{"ioServiceBytesRecursive":[{"major":8,"op":"Read","value":4096}],"ioServicedRecursive":[{"major":8,"minor":1,"op":"Write","value":2}]},` +
	`"hugetlb":{"2MB":{"usage":4,"failcnt":0}},"intel_rdt":{},` +
	`"network_interfaces":[{"Name":"eth0","RxBytes":1,"RxPackets":2,"RxErrors":0,"RxDropped":0,"TxBytes":3,"TxPackets":4,"TxErrors":0,"TxDropped":0}]}`

// TestStatsJSONIsRuncs: runc's stats decode into StatsResponse and encode
// back to the same JSON, names and omitted fields alike.
func TestStatsJSONIsRuncs(t *testing.T) {
	var s StatsResponse
	if err := json.Unmarshal([]byte(runcStats), &s); err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(&s)
	if err != nil {
		t.Fatal(err)
	}
	var want, got any
	json.Unmarshal([]byte(runcStats), &want)
	json.Unmarshal(b, &got)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("round trip differs:\n got  %s\n want %s", b, runcStats)
	}
	// And an empty one prints as runc's does with nothing to report.
	b, _ = json.Marshal(&StatsResponse{Hugetlb: map[string]HugetlbStats{}})
	const empty = `{"cpu":{"usage":{"kernel":0,"user":0},"throttling":{}},"cpuset":{"cpu_exclusive":0,"mem_hardwall":0,"mem_exclusive":0,"memory_migrate":0,"memory_spread_page":0,"memory_spread_slab":0,"memory_pressure":0,"sched_load_balance":0,"sched_relax_domain_level":0},"memory":{"usage":{"limit":0,"failcnt":0},"swap":{"limit":0,"failcnt":0},"kernel":{"limit":0,"failcnt":0},"kernelTCP":{"limit":0,"failcnt":0}},"pids":{},"blkio":{},"hugetlb":{},"intel_rdt":{},"network_interfaces":null}`
	if string(b) != empty {
		t.Errorf("empty stats:\n got  %s\n want %s", b, empty)
	}
}

// Command kabuto-agent is PID 1 of a kabuto guest (see guest/agent; its
// exec'd processes start in the C constructor of guest/nsenter).
package main

import "github.com/kabuto-runtime/kabuto/guest/agent"

func main() { agent.Main() }

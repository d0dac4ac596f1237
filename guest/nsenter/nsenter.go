// Package nsenter starts the processes kabuto-agent runs inside a running
// container (exec, startContainer hooks), entirely in C: Go cannot join a
// mount namespace from a multithreaded process, and starting a Go runtime
// for a process that only sets itself up and execs costs tens of
// milliseconds under emulation. The work happens in a C constructor that
// runs before the Go runtime starts, when the process is still
// single-threaded. Guest only; the agent imports it for Encode and for the
// constructor.
//
// Protocol: the agent starts /proc/self/exe with _KABUTO_NSENTER_PID=<pid of
// a process in the container> and _KABUTO_NSENTER_FD=<fd>, and the fds of a
// container child (0-2 stdio, 3 config, 4 status, 5 start, 6 console). The
// constructor joins every namespace of that pid that differs from its own
// (user first), then clones with CLONE_PARENT, so that the new process is a
// child of the agent and is born in the joined pid namespace. The
// intermediate writes the new process's pid ("<pid>\n") to the fd and exits;
// on failure it writes "error: <msg>\n". The new process never reaches Go:
// it reads the exec config (Encode's blob) from fd 3 to EOF, sets itself up
// (setsid, terminal, rlimits, oom_score_adj, cwd, executable lookup),
// writes "ready\n" (or "error: <msg>\n") to fd 4, waits for a byte on fd 5,
// drops to the process's identity and privileges, loads the seccomp filter
// and execs (execchild.h). fd 4 is close-on-exec: EOF means the exec
// happened.
package nsenter

/*
#cgo CFLAGS: -Wall -O2
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "execchild.h"

static void report(int fd, const char *msg) {
	char buf[256];
	int n = snprintf(buf, sizeof(buf), "%s\n", msg);
	if (n > 0 && write(fd, buf, (size_t)n) < 0) {
	}
}

__attribute__((constructor)) static void kabuto_nsenter(void) {
	const char *pid = getenv("_KABUTO_NSENTER_PID");
	const char *fds = getenv("_KABUTO_NSENTER_FD");
	if (pid == NULL || fds == NULL) {
		return;
	}
	int syncfd = atoi(fds);
	static const char *types[] = {"user", "cgroup", "ipc", "uts", "net", "pid", "mnt"};
	static const int flags[] = {CLONE_NEWUSER, CLONE_NEWCGROUP, CLONE_NEWIPC, CLONE_NEWUTS, CLONE_NEWNET, CLONE_NEWPID, CLONE_NEWNS};
	int n = (int)(sizeof(types) / sizeof(types[0]));
	int nsfd[8];
	char path[128], msg[200];
	for (int i = 0; i < n; i++) {
		struct stat theirs, ours;
		nsfd[i] = -1;
		snprintf(path, sizeof(path), "/proc/self/ns/%s", types[i]);
		if (stat(path, &ours) < 0) {
			continue; // this kernel lacks the namespace type
		}
		snprintf(path, sizeof(path), "/proc/%s/ns/%s", pid, types[i]);
		if (stat(path, &theirs) < 0) {
			// Never run the process outside the container.
			snprintf(msg, sizeof(msg), "error: the container process %s is gone", pid);
			report(syncfd, msg);
			_exit(1);
		}
		if (ours.st_ino == theirs.st_ino && ours.st_dev == theirs.st_dev) {
			continue;
		}
		snprintf(path, sizeof(path), "/proc/%s/ns/%s", pid, types[i]);
		nsfd[i] = open(path, O_RDONLY | O_CLOEXEC);
		if (nsfd[i] < 0) {
			snprintf(msg, sizeof(msg), "error: open %s: %s", path, strerror(errno));
			report(syncfd, msg);
			_exit(1);
		}
	}
	for (int i = 0; i < n; i++) {
		if (nsfd[i] >= 0 && setns(nsfd[i], flags[i]) < 0) {
			snprintf(msg, sizeof(msg), "error: join %s namespace: %s", types[i], strerror(errno));
			report(syncfd, msg);
			_exit(1);
		}
		if (nsfd[i] >= 0) {
			close(nsfd[i]);
		}
	}
	long child = syscall(SYS_clone, CLONE_PARENT | SIGCHLD, 0, 0, 0, 0);
	if (child < 0) {
		snprintf(msg, sizeof(msg), "error: clone: %s", strerror(errno));
		report(syncfd, msg);
		_exit(1);
	}
	if (child == 0) {
		kabuto_exec_child();
	}
	snprintf(msg, sizeof(msg), "%ld", child);
	report(syncfd, msg);
	_exit(0);
}

// kb_check parses a blob and frees it: the test hook for the parser.
static const char *kb_check(const void *buf, size_t len) {
	struct kb_exec c;
	const char *err = kb_parse(buf, len, &c);
	kb_free(&c);
	return err;
}
*/
import "C"

import "errors"

// parse runs the C parser of the exec child on b (tests).
func parse(b []byte) error {
	p := C.CBytes(b)
	defer C.free(p)
	if err := C.kb_check(p, C.size_t(len(b))); err != nil {
		return errors.New(C.GoString(err))
	}
	return nil
}

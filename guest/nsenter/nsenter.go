// Package nsenter lets kabuto-agent start a process inside a running
// container's namespaces. Go cannot join a mount namespace from a
// multithreaded process, so the work happens in a C constructor that runs
// before the Go runtime starts, when the process is still single-threaded.
// Guest only; imported for its side effect.
//
// Protocol: the agent starts /proc/self/exe with _KABUTO_NSENTER_PID=<pid of
// a process in the container> and _KABUTO_NSENTER_FD=<fd>. The constructor
// joins every namespace of that pid that differs from its own (user first),
// then clones with CLONE_PARENT, so that the new process is a child of the
// agent and is born in the joined pid namespace. The intermediate writes the
// new process's pid ("<pid>\n") to the fd and exits; the new process carries
// on into Go's main. On failure the intermediate writes "error: <msg>\n".
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
		unsetenv("_KABUTO_NSENTER_PID");
		unsetenv("_KABUTO_NSENTER_FD");
		return;
	}
	snprintf(msg, sizeof(msg), "%ld", child);
	report(syncfd, msg);
	_exit(0);
}
*/
import "C"

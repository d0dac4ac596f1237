// The exec child: the process an exec (or a startContainer hook) runs as,
// entirely in C, so that no Go runtime starts between the agent's request
// and the execve. Included once, by nsenter.go; see the package doc for the
// protocol and config.go for the configuration blob it reads from fd 3.

#include <ctype.h>
#include <dirent.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stdarg.h>
#include <stdint.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>

// The fds of a container child (guest/agent/child.go).
#define KB_FD_CONFIG 3
#define KB_FD_STATUS 4
#define KB_FD_START 5
#define KB_FD_CONSOLE 6

// Bounds of the blob and its parts: far above anything real, low enough
// that a bad length cannot make the child allocate without limit.
#define KB_MAX_CONFIG (16u << 20)
#define KB_MAX_GIDS 65536u
#define KB_MAX_RLIMITS 16u // RLIM_NLIMITS
#define KB_MAX_INSNS 4096u // BPF_MAXINSNS

// Flag bits, as in config.go.
#define KB_F_TERMINAL 1u
#define KB_F_NO_NEW_PRIVS 2u
#define KB_F_CAPS 4u
#define KB_F_OOM 8u
#define KB_F_ALL 15u

static const char kb_magic[4] = {'K', 'B', 'X', '1'};

struct kb_rlimit {
	uint32_t resource;
	uint64_t soft, hard;
};

struct kb_exec {
	uint32_t flags, umask, uid, gid, last_cap;
	int32_t oom_score_adj;
	uint64_t bounding, effective, permitted, inheritable, ambient;
	uint32_t ngids;
	gid_t *gids;
	uint32_t nrlimits;
	struct kb_rlimit *rlimits;
	uint32_t seccomp_flags, ninsns;
	struct sock_filter *insns;
	char *cwd;
	uint32_t argc, envc;
	char **argv, **envp; // NULL-terminated
};

struct kb_reader {
	const unsigned char *p;
	size_t left;
};

static int kb_u32(struct kb_reader *r, uint32_t *v) {
	if (r->left < 4) {
		return -1;
	}
	*v = (uint32_t)r->p[0] | (uint32_t)r->p[1] << 8 | (uint32_t)r->p[2] << 16 | (uint32_t)r->p[3] << 24;
	r->p += 4;
	r->left -= 4;
	return 0;
}

static int kb_u64(struct kb_reader *r, uint64_t *v) {
	uint32_t lo, hi;
	if (r->left < 8 || kb_u32(r, &lo) < 0 || kb_u32(r, &hi) < 0) {
		return -1;
	}
	*v = (uint64_t)hi << 32 | lo;
	return 0;
}

// kb_str reads a length-prefixed string without NUL bytes into a new
// NUL-terminated copy.
static const char *kb_str(struct kb_reader *r, char **out) {
	uint32_t n;
	if (kb_u32(r, &n) < 0 || n > r->left) {
		return "truncated string";
	}
	if (memchr(r->p, 0, n) != NULL) {
		return "string with a NUL byte";
	}
	char *s = malloc((size_t)n + 1);
	if (s == NULL) {
		return "out of memory";
	}
	memcpy(s, r->p, n);
	s[n] = 0;
	r->p += n;
	r->left -= n;
	*out = s;
	return NULL;
}

// kb_strs reads a count and that many strings into a NULL-terminated array.
static const char *kb_strs(struct kb_reader *r, uint32_t *count, char ***out) {
	uint32_t n;
	if (kb_u32(r, &n) < 0) {
		return "truncated string count";
	}
	// Every string takes at least its 4-byte length.
	if (n > r->left / 4) {
		return "string count beyond the end of the config";
	}
	char **v = calloc((size_t)n + 1, sizeof(char *));
	if (v == NULL) {
		return "out of memory";
	}
	*out = v; // freed by kb_free, even when partly filled
	*count = n;
	for (uint32_t i = 0; i < n; i++) {
		const char *err = kb_str(r, &v[i]);
		if (err != NULL) {
			return err;
		}
	}
	return NULL;
}

static void kb_free(struct kb_exec *c) {
	free(c->gids);
	free(c->rlimits);
	free(c->insns);
	free(c->cwd);
	for (char **v = c->argv; v != NULL && *v != NULL; v++) {
		free(*v);
	}
	free(c->argv);
	for (char **v = c->envp; v != NULL && *v != NULL; v++) {
		free(*v);
	}
	free(c->envp);
	memset(c, 0, sizeof(*c));
}

// kb_parse decodes the blob into c (zeroed first); it returns NULL or what
// is wrong. Every length is checked against what is left; nothing after
// the last field is allowed. On error, kb_free(c) releases what was read.
static const char *kb_parse(const unsigned char *buf, size_t len, struct kb_exec *c) {
	struct kb_reader r = {buf, len};
	memset(c, 0, sizeof(*c));
	if (len > KB_MAX_CONFIG) {
		return "config too large";
	}
	if (len < sizeof(kb_magic) || memcmp(buf, kb_magic, sizeof(kb_magic)) != 0) {
		return "not an exec config (bad magic)";
	}
	r.p += sizeof(kb_magic);
	r.left -= sizeof(kb_magic);
	uint32_t oom;
	if (kb_u32(&r, &c->flags) < 0 || kb_u32(&r, &c->umask) < 0 || kb_u32(&r, &c->uid) < 0 ||
	    kb_u32(&r, &c->gid) < 0 || kb_u32(&r, &c->last_cap) < 0 || kb_u32(&r, &oom) < 0 ||
	    kb_u64(&r, &c->bounding) < 0 || kb_u64(&r, &c->effective) < 0 || kb_u64(&r, &c->permitted) < 0 ||
	    kb_u64(&r, &c->inheritable) < 0 || kb_u64(&r, &c->ambient) < 0) {
		return "truncated header";
	}
	c->oom_score_adj = (int32_t)oom;
	if (c->flags & ~KB_F_ALL) {
		return "unknown flags";
	}
	if (c->umask > 0777) {
		return "umask out of range";
	}
	if (c->last_cap > 63) {
		return "last capability out of range";
	}
	if (kb_u32(&r, &c->ngids) < 0) {
		return "truncated group count";
	}
	if (c->ngids > KB_MAX_GIDS || c->ngids > r.left / 4) {
		return "group count out of range";
	}
	if (c->ngids > 0) {
		if ((c->gids = calloc(c->ngids, sizeof(gid_t))) == NULL) {
			return "out of memory";
		}
		for (uint32_t i = 0; i < c->ngids; i++) {
			uint32_t g;
			kb_u32(&r, &g); // within bounds: checked above
			c->gids[i] = (gid_t)g;
		}
	}
	if (kb_u32(&r, &c->nrlimits) < 0) {
		return "truncated rlimit count";
	}
	if (c->nrlimits > KB_MAX_RLIMITS || c->nrlimits > r.left / 20) {
		return "rlimit count out of range";
	}
	if (c->nrlimits > 0) {
		if ((c->rlimits = calloc(c->nrlimits, sizeof(struct kb_rlimit))) == NULL) {
			return "out of memory";
		}
		for (uint32_t i = 0; i < c->nrlimits; i++) {
			struct kb_rlimit *rl = &c->rlimits[i];
			kb_u32(&r, &rl->resource);
			kb_u64(&r, &rl->soft);
			kb_u64(&r, &rl->hard);
			if (rl->resource >= KB_MAX_RLIMITS) {
				return "rlimit resource out of range";
			}
		}
	}
	if (kb_u32(&r, &c->seccomp_flags) < 0 || kb_u32(&r, &c->ninsns) < 0) {
		return "truncated seccomp header";
	}
	if (c->ninsns > KB_MAX_INSNS || c->ninsns > r.left / 8) {
		return "seccomp program length out of range";
	}
	if (c->ninsns > 0) {
		if ((c->insns = calloc(c->ninsns, sizeof(struct sock_filter))) == NULL) {
			return "out of memory";
		}
		for (uint32_t i = 0; i < c->ninsns; i++) {
			uint32_t lo, k;
			kb_u32(&r, &lo);
			kb_u32(&r, &k);
			c->insns[i].code = (uint16_t)(lo & 0xffff);
			c->insns[i].jt = (uint8_t)(lo >> 16);
			c->insns[i].jf = (uint8_t)(lo >> 24);
			c->insns[i].k = k;
		}
	} else if (c->seccomp_flags != 0) {
		return "seccomp flags without a program";
	}
	const char *err = kb_str(&r, &c->cwd);
	if (err != NULL) {
		return err;
	}
	if (c->cwd[0] == 0) {
		return "empty cwd";
	}
	if ((err = kb_strs(&r, &c->argc, &c->argv)) != NULL) {
		return err;
	}
	if (c->argc == 0) {
		return "no process to run";
	}
	if ((err = kb_strs(&r, &c->envc, &c->envp)) != NULL) {
		return err;
	}
	if (r.left != 0) {
		return "trailing bytes after the config";
	}
	return NULL;
}

// kb_errstr is strerror as Go spells errnos (lower case first letter).
static const char *kb_errstr(int e) {
	static char buf[128];
	snprintf(buf, sizeof(buf), "%s", strerror(e));
	buf[0] = (char)tolower((unsigned char)buf[0]);
	return buf;
}

// kb_quote writes s as a double-quoted string into out, escaping what Go's
// %q would (quotes, backslashes, control bytes) in the \xNN form.
static const char *kb_quote(const char *s, char *out, size_t size) {
	size_t n = 0;
	if (size < 3) {
		return "\"\"";
	}
	out[n++] = '"';
	for (; *s != 0 && n + 6 < size; s++) {
		unsigned char ch = (unsigned char)*s;
		if (ch == '"' || ch == '\\') {
			out[n++] = '\\';
			out[n++] = (char)ch;
		} else if (ch < 0x20 || ch == 0x7f) {
			n += (size_t)snprintf(out + n, size - n, "\\x%02x", ch);
		} else {
			out[n++] = (char)ch;
		}
	}
	out[n++] = '"';
	out[n] = 0;
	return out;
}

// kb_fail reports "error: <msg>" on the status fd (one line) and exits.
__attribute__((noreturn, format(printf, 1, 2))) static void kb_fail(const char *fmt, ...) {
	char buf[4096];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(buf, sizeof(buf) - 1, fmt, ap);
	va_end(ap);
	if (n < 0) {
		n = 0;
	}
	if ((size_t)n > sizeof(buf) - 2) {
		n = (int)sizeof(buf) - 2;
	}
	for (int i = 0; i < n; i++) {
		if (buf[i] == '\n') {
			buf[i] = ' ';
		}
	}
	buf[n++] = '\n';
	struct iovec iov[2] = {{(void *)"error: ", 7}, {buf, (size_t)n}};
	if (writev(KB_FD_STATUS, iov, 2) < 0) {
	}
	_exit(1);
}

// kb_read_config reads fd 3 to EOF (the agent closes its end once written:
// the agent has put the child in its cgroup by then).
static unsigned char *kb_read_config(size_t *len) {
	size_t cap = 4096, n = 0;
	unsigned char *buf = malloc(cap);
	if (buf == NULL) {
		kb_fail("read container config: out of memory");
	}
	for (;;) {
		if (n == cap) {
			if (cap > KB_MAX_CONFIG) {
				kb_fail("read container config: config too large");
			}
			cap *= 2;
			unsigned char *nb = realloc(buf, cap);
			if (nb == NULL) {
				kb_fail("read container config: out of memory");
			}
			buf = nb;
		}
		ssize_t r = read(KB_FD_CONFIG, buf + n, cap - n);
		if (r < 0 && errno == EINTR) {
			continue;
		}
		if (r < 0) {
			kb_fail("read container config: %s", kb_errstr(errno));
		}
		if (r == 0) {
			break;
		}
		n += (size_t)r;
	}
	*len = n;
	return buf;
}

// kb_cloexec_all keeps every fd above stdio (the agent's pipes, the nsenter
// sync fd) out of the container; fds 3-6 are still used until the exec.
static void kb_cloexec_all(void) {
#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif
	if (syscall(SYS_close_range, 3, ~0U, CLOSE_RANGE_CLOEXEC) == 0) {
		return;
	}
	DIR *d = opendir("/proc/self/fd");
	if (d == NULL) {
		for (int fd = 3; fd < 64; fd++) {
			fcntl(fd, F_SETFD, FD_CLOEXEC);
		}
		return;
	}
	int self = dirfd(d);
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		char *end;
		long fd = strtol(e->d_name, &end, 10);
		if (*end == 0 && end != e->d_name && fd > 2 && fd != self) {
			fcntl((int)fd, F_SETFD, FD_CLOEXEC);
		}
	}
	closedir(d);
}

// kb_setup_console opens a pty inside the container, sends its master to
// the agent over fd 6 and makes the slave the controlling terminal and
// stdio (setupConsole in guest/agent/child.go).
static void kb_setup_console(void) {
	int master = open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (master < 0) {
		kb_fail("open /dev/ptmx in the container: open /dev/ptmx: %s", kb_errstr(errno));
	}
	int unlock = 0;
	if (ioctl(master, TIOCSPTLCK, &unlock) < 0) {
		kb_fail("unlockpt: %s", kb_errstr(errno));
	}
	unsigned int ptn;
	if (ioctl(master, TIOCGPTN, &ptn) < 0) {
		kb_fail("ptsname: %s", kb_errstr(errno));
	}
	char path[64];
	snprintf(path, sizeof(path), "/dev/pts/%u", ptn);
	int slave = open(path, O_RDWR | O_NOCTTY);
	if (slave < 0) {
		kb_fail("open %s: %s", path, kb_errstr(errno));
	}
	char data[3] = {'p', 't', 'y'};
	struct iovec iov = {data, sizeof(data)};
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} u;
	memset(&u, 0, sizeof(u));
	struct msghdr msg = {0};
	msg.msg_iov = &iov;
	msg.msg_iovlen = 1;
	msg.msg_control = u.buf;
	msg.msg_controllen = sizeof(u.buf);
	struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(cm), &master, sizeof(int));
	ssize_t sent;
	do {
		sent = sendmsg(KB_FD_CONSOLE, &msg, 0);
	} while (sent < 0 && errno == EINTR);
	if (sent < 0) {
		kb_fail("send pty master: %s", kb_errstr(errno));
	}
	if (ioctl(slave, TIOCSCTTY, 0) < 0) {
		kb_fail("set controlling terminal: %s", kb_errstr(errno));
	}
	for (int fd = 0; fd < 3; fd++) {
		if (slave != fd && dup3(slave, fd, 0) < 0) {
			kb_fail("%s", kb_errstr(errno));
		}
	}
	if (slave > 2) {
		close(slave);
	}
	close(master);
}

static const char *kb_rlimit_names[KB_MAX_RLIMITS] = {
    "RLIMIT_CPU", "RLIMIT_FSIZE", "RLIMIT_DATA", "RLIMIT_STACK", "RLIMIT_CORE", "RLIMIT_RSS",
    "RLIMIT_NPROC", "RLIMIT_NOFILE", "RLIMIT_MEMLOCK", "RLIMIT_AS", "RLIMIT_LOCKS", "RLIMIT_SIGPENDING",
    "RLIMIT_MSGQUEUE", "RLIMIT_NICE", "RLIMIT_RTPRIO", "RLIMIT_RTTIME",
};

static void kb_set_oom_score_adj(int32_t v) {
	const char *path = "/proc/self/oom_score_adj";
	char buf[16];
	int n = snprintf(buf, sizeof(buf), "%d", (int)v);
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0) {
		kb_fail("set oom_score_adj: open %s: %s", path, kb_errstr(errno));
	}
	if (write(fd, buf, (size_t)n) != n) {
		kb_fail("set oom_score_adj: write %s: %s", path, kb_errstr(errno));
	}
	close(fd);
}

// kb_check_executable is checkExecutable: NULL if p is an executable file,
// else why not (into err).
static const char *kb_check_executable(const char *p, char *err, size_t size) {
	struct stat st;
	if (stat(p, &st) < 0) {
		snprintf(err, size, "stat %s: %s", p, kb_errstr(errno));
		return err;
	}
	if (S_ISDIR(st.st_mode)) {
		snprintf(err, size, "%s is a directory", p);
		return err;
	}
	if ((st.st_mode & 0111) == 0) {
		snprintf(err, size, "%s: permission denied", p);
		return err;
	}
	return NULL;
}

// kb_look_path is lookPath: file resolved against PATH from the process's
// env (the last PATH= wins; runc's default without one), as execvp would.
static char *kb_look_path(const char *file, char *const *envp) {
	char q[1024], why[1200];
	if (strchr(file, '/') != NULL) {
		if (kb_check_executable(file, why, sizeof(why)) != NULL) {
			kb_fail("exec: %s: %s", kb_quote(file, q, sizeof(q)), why);
		}
		return (char *)file;
	}
	const char *path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
	for (char *const *e = envp; *e != NULL; e++) {
		if (strncmp(*e, "PATH=", 5) == 0) {
			path = *e + 5;
		}
	}
	// An empty PATH has no entries (filepath.SplitList); an empty entry is ".".
	for (const char *dir = path; *path != 0;) {
		const char *end = strchrnul(dir, ':');
		size_t dlen = (size_t)(end - dir);
		char *p = malloc(dlen + strlen(file) + 3);
		if (p == NULL) {
			kb_fail("out of memory");
		}
		if (dlen == 0) {
			strcpy(p, "./");
		} else {
			memcpy(p, dir, dlen);
			p[dlen] = 0;
			if (p[dlen - 1] != '/') {
				strcat(p, "/");
			}
		}
		strcat(p, file);
		if (kb_check_executable(p, why, sizeof(why)) == NULL) {
			return p;
		}
		free(p);
		if (*end == 0) {
			break;
		}
		dir = end + 1;
	}
	kb_fail("exec: %s: executable file not found in $PATH", kb_quote(file, q, sizeof(q)));
}

static void kb_load_seccomp(const struct kb_exec *c) {
	if (c->ninsns == 0) {
		return;
	}
	struct sock_fprog prog = {(unsigned short)c->ninsns, c->insns};
	long r = syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, c->seccomp_flags, &prog);
	if (r < 0) {
		int e = errno;
		if (e == EINVAL && c->seccomp_flags != 0) {
			kb_fail("error loading seccomp filter: %s (flags %#x: not supported by this kernel?)", kb_errstr(e),
			        c->seccomp_flags);
		}
		kb_fail("error loading seccomp filter: %s", kb_errstr(e));
	}
	if ((c->seccomp_flags & SECCOMP_FILTER_FLAG_TSYNC) && r != 0) {
		kb_fail("error loading seccomp filter: thread %ld could not be synchronized (SECCOMP_FILTER_FLAG_TSYNC)", r);
	}
}

// kb_finalize is finalizeChild: identity, privileges and the seccomp filter,
// in runc's order. Without no_new_privs the filter needs CAP_SYS_ADMIN, so it
// goes in first (and must allow what follows); with it, last. The set*id
// calls are raw syscalls: this process is single-threaded, and glibc's
// wrappers would try to run them on every thread of the one it cloned from.
static void kb_finalize(const struct kb_exec *c) {
	int caps = (c->flags & KB_F_CAPS) != 0;
	umask((mode_t)c->umask);
	if (!(c->flags & KB_F_NO_NEW_PRIVS)) {
		kb_load_seccomp(c);
	}
	if (caps) {
		for (uint32_t cap = 0; cap <= c->last_cap; cap++) {
			if (c->bounding & (1ULL << cap)) {
				continue;
			}
			if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0) {
				kb_fail("drop capability %u from the bounding set: %s", cap, kb_errstr(errno));
			}
		}
		if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) < 0) {
			kb_fail("%s", kb_errstr(errno));
		}
	}
	if (syscall(SYS_setgroups, (size_t)c->ngids, c->gids) < 0 && !(errno == EPERM && c->ngids == 0)) {
		kb_fail("setgroups: %s", kb_errstr(errno));
	}
	if (syscall(SYS_setresgid, c->gid, c->gid, c->gid) < 0) {
		kb_fail("setgid %u: %s", c->gid, kb_errstr(errno));
	}
	if (syscall(SYS_setresuid, c->uid, c->uid, c->uid) < 0) {
		kb_fail("setuid %u: %s", c->uid, kb_errstr(errno));
	}
	if (caps) {
		if (prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0) < 0) {
			kb_fail("%s", kb_errstr(errno));
		}
		struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
		struct __user_cap_data_struct data[2] = {
		    {(uint32_t)c->effective, (uint32_t)c->permitted, (uint32_t)c->inheritable},
		    {(uint32_t)(c->effective >> 32), (uint32_t)(c->permitted >> 32), (uint32_t)(c->inheritable >> 32)},
		};
		if (syscall(SYS_capset, &hdr, data) < 0) {
			kb_fail("capset: %s", kb_errstr(errno));
		}
		if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0) {
			kb_fail("clear ambient capabilities: %s", kb_errstr(errno));
		}
		for (int i = 0; i < 64; i++) {
			if ((c->ambient & (1ULL << i)) && prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, i, 0, 0) < 0) {
				kb_fail("raise ambient capability %d: %s", i, kb_errstr(errno));
			}
		}
	}
	if (c->flags & KB_F_NO_NEW_PRIVS) {
		if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) {
			kb_fail("set no_new_privs: %s", kb_errstr(errno));
		}
		kb_load_seccomp(c);
	}
}

// kabuto_exec_child runs in the process nsenter cloned into the container:
// it reads the config, sets the process up, reports "ready" on fd 4, waits
// for the start byte on fd 5, drops to the process's identity and execs.
// The status fd is close-on-exec: EOF tells the agent the exec happened.
__attribute__((noreturn)) static void kabuto_exec_child(void) {
	size_t len;
	unsigned char *buf = kb_read_config(&len);
	static struct kb_exec c;
	const char *err = kb_parse(buf, len, &c);
	if (err != NULL) {
		kb_fail("read container config: %s", err);
	}
	free(buf);
	kb_cloexec_all();
	if (setsid() < 0) {
		kb_fail("setsid: %s", kb_errstr(errno));
	}
	if (c.flags & KB_F_TERMINAL) {
		kb_setup_console();
	}
	for (uint32_t i = 0; i < c.nrlimits; i++) {
		struct rlimit rl = {c.rlimits[i].soft, c.rlimits[i].hard};
		if (setrlimit((int)c.rlimits[i].resource, &rl) < 0) {
			kb_fail("setrlimit %s: %s", kb_rlimit_names[c.rlimits[i].resource], kb_errstr(errno));
		}
	}
	if (c.flags & KB_F_OOM) {
		kb_set_oom_score_adj(c.oom_score_adj);
	}
	char q[1024];
	if (chdir(c.cwd) < 0) {
		kb_fail("chdir to cwd (%s) set in config.json failed: %s", kb_quote(c.cwd, q, sizeof(q)), kb_errstr(errno));
	}
	char *path = kb_look_path(c.argv[0], c.envp);
	static const char ready[] = "ready\n";
	if (write(KB_FD_STATUS, ready, sizeof(ready) - 1) < 0) {
	}
	char go;
	ssize_t n;
	do {
		n = read(KB_FD_START, &go, 1);
	} while (n < 0 && errno == EINTR);
	if (n != 1) {
		_exit(1);
	}
	kb_finalize(&c);
	close(KB_FD_CONFIG);
	close(KB_FD_START);
	close(KB_FD_CONSOLE);
	execve(path, c.argv, c.envp);
	kb_fail("exec %s: %s", kb_quote(c.argv[0], q, sizeof(q)), kb_errstr(errno));
}

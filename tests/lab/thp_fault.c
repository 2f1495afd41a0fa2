/*
 * Fault in one transparent huge page and hold it: a real order-9 request
 * (with /sys/kernel/mm/transparent_hugepage/defrag = never its gfp is
 * GFP_TRANSHUGE_LIGHT: no reclaim, no compaction, so the allocator's first
 * attempts alone decide). Prints "thp: alloc A fallback F" (the deltas of
 * /proc/vmstat thp_fault_alloc / thp_fault_fallback) on stdout and
 * /dev/console, then sleeps holding the page until killed.
 *
 * "thp_fault wait": map first, print "thp: ready", and fault only on
 * SIGUSR1, so that no fork or exec runs between a snapshot and the fault.
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static void counters(long *alloc, long *fallback)
{
	char name[64];
	long v;
	FILE *f = fopen("/proc/vmstat", "r");
	*alloc = *fallback = -1;
	if (!f)
		return;
	while (fscanf(f, "%63s %ld", name, &v) == 2) {
		if (!strcmp(name, "thp_fault_alloc"))
			*alloc = v;
		else if (!strcmp(name, "thp_fault_fallback"))
			*fallback = v;
	}
	fclose(f);
}

static void say(const char *line)
{
	fputs(line, stdout);
	fflush(stdout);
	FILE *c = fopen("/dev/console", "w");
	if (c) {
		fputs(line, c);
		fclose(c);
	}
}

int main(int argc, char **argv)
{
	const unsigned long huge = 2UL << 20;
	long a0, f0, a1, f1;
	char *p = mmap(NULL, 2 * huge, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return 1;
	char *aligned = (char *)(((unsigned long)p + huge - 1) & ~(huge - 1));
	madvise(aligned, huge, MADV_HUGEPAGE);
	if (argc > 1 && !strcmp(argv[1], "wait")) {
		sigset_t set;
		int sig;
		sigemptyset(&set);
		sigaddset(&set, SIGUSR1);
		sigprocmask(SIG_BLOCK, &set, NULL);
		say("thp: ready\n");
		sigwait(&set, &sig);
	}
	counters(&a0, &f0);
	aligned[0] = 1;
	counters(&a1, &f1);
	char line[96];
	snprintf(line, sizeof(line), "thp: alloc %ld fallback %ld\n", a1 - a0, f1 - f0);
	say(line);
	for (;;)
		pause();
}

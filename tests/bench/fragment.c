/*
 * Fragment a guest's free memory quickly: fault in nearly all free memory as
 * 4 KiB anonymous pages, then give back every other page. Each page given
 * back has its buddy still in use, so it stays an order-0 entry on a free
 * list: a state with hundreds of thousands of free-list entries, made in
 * seconds (busybox shell loops over tmpfs files take minutes under TCG).
 *
 * Usage: fragment KEEP_FREE_MIB   (fault pages in until MemAvailable is that low)
 * Prints "fragment: ready N" on stdout and /dev/console, then sleeps, holding
 * the pages, until killed.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static long mem_available_kib(void)
{
	char line[256];
	long kib = -1;
	FILE *f = fopen("/proc/meminfo", "r");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "MemAvailable: %ld kB", &kib) == 1)
			break;
	fclose(f);
	return kib;
}

int main(int argc, char **argv)
{
	long keep_kib = (argc > 1 ? atol(argv[1]) : 96) * 1024;
	const long page = sysconf(_SC_PAGESIZE);
	static char *chunks[65536];
	static size_t sizes[65536];
	int n = 0;
	long given_back = 0, left;

	/* Smaller chunks as MemAvailable nears KEEP_FREE_MIB: fill it closely. */
	while (n < 65536 && (left = mem_available_kib() - keep_kib) > 1024) {
		size_t chunk = left > 65536 ? 16UL << 20 : (size_t)left << 9;
		chunk &= ~(size_t)(page - 1);
		char *p = mmap(NULL, chunk, PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (p == MAP_FAILED)
			break;
		madvise(p, chunk, MADV_NOHUGEPAGE);
		for (size_t off = 0; off < chunk; off += page)
			p[off] = 1;
		sizes[n] = chunk;
		chunks[n++] = p;
	}
	for (int i = 0; i < n; i++)
		for (size_t off = 0; off < sizes[i]; off += 2 * page) {
			madvise(chunks[i] + off, page, MADV_DONTNEED);
			given_back++;
		}
	printf("fragment: ready %ld\n", given_back);
	fflush(stdout);
	int con = open("/dev/console", O_WRONLY);
	if (con >= 0) {
		dprintf(con, "fragment: ready %ld\n", given_back);
		close(con);
	}
	for (;;)
		pause();
}

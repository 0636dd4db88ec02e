/*
 * replay.c — run a libFuzzer harness over a corpus without libFuzzer: every
 * file of each directory argument (or each file argument) is read into a
 * buffer of exactly its size and passed to LLVMFuzzerTestOneInput().  Built
 * with gcc in both flavours, so ctest replays every corpus, under ASan too.
 * Exit 0 when every input ran, 1 on an unreadable or empty corpus (a
 * harness that crashes ends the program itself).
 */
#include <sys/stat.h>
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#pragma GCC poison strcpy strcat vsprintf
#ifndef sprintf /* a macro in clang's fortified stdio: cannot be poisoned */
#pragma GCC poison sprintf
#endif

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int
replay_file(const char *path)
{
	struct stat st;
	uint8_t *buf = NULL;
	FILE *f;
	int rc = -1;

	if ((f = fopen(path, "rb")) == NULL || fstat(fileno(f), &st) != 0) {
		perror(path);
		goto done;
	}
	/* Exactly the input's size (1 for an empty one): ASan sees any read
	 * past the end. */
	if ((buf = malloc(st.st_size > 0 ? (size_t)st.st_size : 1)) == NULL) {
		perror("malloc");
		goto done;
	}
	if (st.st_size > 0 &&
	    fread(buf, 1, (size_t)st.st_size, f) != (size_t)st.st_size) {
		fprintf(stderr, "%s: short read\n", path);
		goto done;
	}
	LLVMFuzzerTestOneInput(buf, (size_t)st.st_size);
	rc = 0;
done:
	free(buf);
	if (f != NULL)
		fclose(f);
	return rc;
}

static int
replay_skip_dot(const struct dirent *d)
{
	return d->d_name[0] != '.';
}

int
main(int argc, char *argv[])
{
	struct dirent **names;
	struct stat st;
	char path[4096];
	unsigned ran = 0;
	int i, j, n, rc = 0;

	if (argc < 2) {
		fprintf(stderr, "usage: %s DIR|FILE ...\n", argv[0]);
		return 2;
	}
	for (i = 1; i < argc; i++) {
		if (stat(argv[i], &st) != 0) {
			perror(argv[i]);
			return 1;
		}
		if (!S_ISDIR(st.st_mode)) {
			rc |= replay_file(argv[i]);
			ran++;
			continue;
		}
		if ((n = scandir(argv[i], &names, replay_skip_dot, alphasort)) <
		    0) {
			perror(argv[i]);
			return 1;
		}
		for (j = 0; j < n; j++) {
			if (snprintf(path, sizeof(path), "%s/%s", argv[i],
				     names[j]->d_name) >= (int)sizeof(path)) {
				fprintf(stderr, "%s: path too long\n",
					names[j]->d_name);
				rc = -1;
			} else if (stat(path, &st) == 0 &&
				   S_ISREG(st.st_mode)) {
				rc |= replay_file(path);
				ran++;
			}
			free(names[j]);
		}
		free(names);
	}
	printf("replayed %u inputs\n", ran);
	if (ran == 0) {
		fprintf(stderr, "no inputs: an empty corpus tests nothing\n");
		return 1;
	}
	return rc == 0 ? 0 : 1;
}

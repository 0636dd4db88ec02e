/*
 * priv.h — giving up root after start-up.
 *
 * outpostd binds its listeners, reads its keys and certificates, opens the
 * queue and its logs as root, hands what it made to its own account, then
 * becomes that account for good: no way back to uid 0, no capability left,
 * no new privilege through exec.  Main thread, at start-up only.
 */
#ifndef MTA_PRIV_H
#define MTA_PRIV_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

struct priv {
	char name[64];
	uid_t uid;
	gid_t gid;
	/* A supplementary group kept by priv_drop ((gid_t)-1: none): the
	 * delivery log's, which the daemon gives to the files it creates
	 * after the drop (a file's owner may only give it a group it is in). */
	gid_t keep_gid;
};

/*
 * The account NAME.  0, or -1 with ERR set: no such user (the message says
 * how to create it) or a lookup failure.
 */
int priv_lookup(const char *name, struct priv *p, char *err, size_t errlen);

/*
 * Give PATH, and everything below it when it is a directory, to P's uid
 * and gid.  Symbolic links are changed themselves, never followed; a path
 * that does not exist is skipped.  0, or -1 with ERR set.
 */
int priv_chown_tree(const char *path, const struct priv *p, char *err,
		    size_t errlen);

/*
 * Become P: supplementary groups dropped (but P->keep_gid), gid then uid set
 * (real, effective and saved), no_new_privs set; then checks that uid 0 cannot
 * be regained and that no capability is left.  Every thread follows (glibc
 * applies set*id to the whole process).  0, or -1 with ERR set: the caller must
 * not go on.
 */
int priv_drop(const struct priv *p, char *err, size_t errlen);

/*
 * After priv_drop: 0 if DIR can be entered, read and written by the
 * current credentials, else -1 with ERR naming the path and why (e.g. a
 * parent directory the account cannot search).
 */
int priv_dir_usable(const char *dir, char *err, size_t errlen);

#endif

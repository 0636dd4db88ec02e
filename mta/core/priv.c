/*
 * priv.c — giving up root after start-up.
 *
 * Owns: the account lookup, the hand-over of the daemon's files, the switch
 * of credentials and its verification.  Main thread, start-up only (the
 * tree walk keeps its target in file-scope state for nftw).  Must not: run
 * once the loops serve clients; leave any way back to root.
 */
#define _GNU_SOURCE /* setresuid, setresgid */
#include <errno.h>
#include <ftw.h>
#include <grp.h>
#include <pwd.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <linux/capability.h>

#include "mta/core/priv.h"

int
priv_lookup(const char *name, struct priv *p, char *err, size_t errlen)
{
	struct passwd pw, *res = NULL;
	char buf[4096];
	int rc;

	memset(p, 0, sizeof(*p));
	p->keep_gid = (gid_t)-1;
	if ((size_t)snprintf(p->name, sizeof(p->name), "%s", name) >=
	    sizeof(p->name)) {
		snprintf(err, errlen, "user name \"%.32s…\" is too long", name);
		return -1;
	}
	rc = getpwnam_r(name, &pw, buf, sizeof(buf), &res);
	if (rc != 0) {
		snprintf(err, errlen, "looking up user \"%s\": %s", name,
			 strerror(rc));
		return -1;
	}
	if (res == NULL) {
		snprintf(err, errlen,
			 "user \"%s\" does not exist: create it with "
			 "`useradd --system --no-create-home --shell "
			 "/usr/sbin/nologin %s`, or name another with run_as = "
			 "\"…\"",
			 name, name);
		return -1;
	}
	if (pw.pw_uid == 0 || pw.pw_gid == 0) {
		snprintf(err, errlen,
			 "user \"%s\" has uid or gid 0: outpostd needs an "
			 "account of its own (or allow_root = true)",
			 name);
		return -1;
	}
	p->uid = pw.pw_uid;
	p->gid = pw.pw_gid;
	return 0;
}

static const struct priv *chown_to;
static int chown_errno;
static char chown_path[256];

static int
priv_chown_one(const char *path, const struct stat *st, int flag,
	       struct FTW *ftw)
{
	gid_t gid;

	(void)ftw;
	if (flag == FTW_NS || flag == FTW_DNR) {
		chown_errno = EACCES;
		snprintf(chown_path, sizeof(chown_path), "%s", path);
		return 1;
	}
	/* A hard link to someone else's file (root's /etc/shadow, say) may
	 * have been planted here by the account itself: handing it over
	 * would hand over that file.  Refuse; an operator looks. */
	if (!S_ISDIR(st->st_mode) && !S_ISLNK(st->st_mode) &&
	    st->st_nlink > 1 && st->st_uid != chown_to->uid) {
		chown_errno = EMLINK;
		snprintf(chown_path, sizeof(chown_path), "%s", path);
		return 1;
	}
	/* A socket keeps its group: control { group } chose who may call. */
	gid = S_ISSOCK(st->st_mode) ? st->st_gid : chown_to->gid;
	if (st->st_uid == chown_to->uid && st->st_gid == gid)
		return 0;
	if (lchown(path, chown_to->uid, gid) != 0) {
		chown_errno = errno;
		snprintf(chown_path, sizeof(chown_path), "%s", path);
		return 1;
	}
	return 0;
}

int
priv_chown_tree(const char *path, const struct priv *p, char *err,
		size_t errlen)
{
	struct stat st;

	if (lstat(path, &st) != 0)
		return errno == ENOENT ? 0 : -1;
	chown_to = p;
	chown_errno = 0;
	if (nftw(path, priv_chown_one, 16, FTW_PHYS) != 0) {
		snprintf(err, errlen, "giving %s to user %s: %s",
			 chown_errno ? chown_path : path, p->name,
			 chown_errno == EMLINK
			     ? "it has other hard links and is not the "
			       "daemon's: refusing (remove the link)"
			     : strerror(chown_errno ? chown_errno : errno));
		return -1;
	}
	return 0;
}

/* 0 if the process holds no capability in any set but the bounding one. */
static int
priv_caps_empty(void)
{
	struct __user_cap_header_struct hdr = { .version =
						    _LINUX_CAPABILITY_VERSION_3,
						.pid = 0 };
	struct __user_cap_data_struct data[2];

	memset(data, 0, sizeof(data));
	if (syscall(SYS_capget, &hdr, data) != 0)
		return -1;
	return (data[0].effective | data[0].permitted | data[0].inheritable |
		data[1].effective | data[1].permitted | data[1].inheritable) ==
		       0
		   ? 0
		   : -1;
}

int
priv_drop(const struct priv *p, char *err, size_t errlen)
{
	uid_t ru, eu, su;
	gid_t rg, eg, sg;
	gid_t groups[2] = { p->gid, p->keep_gid };
	size_t ngroups =
	    p->keep_gid != (gid_t)-1 && p->keep_gid != p->gid ? 2 : 1;

	if (p->keep_gid == 0) {
		snprintf(err, errlen,
			 "user %s: refusing to keep group 0 (root's) after "
			 "dropping root",
			 p->name);
		return -1;
	}
	if (setgroups(ngroups, groups) != 0 ||
	    setresgid(p->gid, p->gid, p->gid) ||
	    setresuid(p->uid, p->uid, p->uid) != 0) {
		snprintf(err, errlen, "becoming user %s (uid %u): %s", p->name,
			 (unsigned)p->uid, strerror(errno));
		return -1;
	}
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
		snprintf(err, errlen, "prctl(PR_SET_NO_NEW_PRIVS): %s",
			 strerror(errno));
		return -1;
	}
	/* Trust, but verify: every id is the account's, root is out of
	 * reach, and the kernel cleared the capabilities with the uid. */
	if (getresuid(&ru, &eu, &su) != 0 || getresgid(&rg, &eg, &sg) != 0 ||
	    ru != p->uid || eu != p->uid || su != p->uid || rg != p->gid ||
	    eg != p->gid || sg != p->gid) {
		snprintf(err, errlen, "user %s: credentials did not change",
			 p->name);
		return -1;
	}
	if (setuid(0) == 0 || seteuid(0) == 0 || setgid(0) == 0) {
		snprintf(err, errlen, "user %s: root could be regained",
			 p->name);
		return -1;
	}
	if (priv_caps_empty() != 0) {
		snprintf(err, errlen, "user %s: capabilities are left",
			 p->name);
		return -1;
	}
	return 0;
}

int
priv_dir_usable(const char *dir, char *err, size_t errlen)
{
	if (access(dir, R_OK | W_OK | X_OK) == 0)
		return 0;
	snprintf(err, errlen,
		 "%s: %s as uid %u (every parent directory must be searchable "
		 "by the daemon's user)",
		 dir, strerror(errno), (unsigned)geteuid());
	return -1;
}

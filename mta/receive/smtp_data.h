/*
 * smtp_data.h — the message data scanner of the SMTP server (DATA and
 * BDAT), a pure function over input octets and a small state.
 *
 * It checks the octets of a message as they arrive, in pieces of any size:
 * strict line ends (CR only before LF, LF only after CR), no NUL, lines of
 * at most 998 octets, the size limit; in DATA mode it also removes the
 * dot-stuffing (RFC 5321 4.5.2) and finds the end of data (CRLF.CRLF).  It
 * copies the body octets to keep into a buffer the caller gives: no
 * allocation, no I/O, no memory budget inside (the caller owns the buffer
 * and charges it, mta/receive/smtp_mem.h).  Feeding the input in one piece or
 * in any split gives the same state, output and result.
 *
 * Thread: none of its own; a state belongs to one session.
 */
#ifndef OUTPOST_MTA_SMTP_DATA_H
#define OUTPOST_MTA_SMTP_DATA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Problems found in message data: the bits of smtp_data_scan.bad. */
#define SMTP_DATA_BAD_BARE  0x01u /* bare CR or bare LF */
#define SMTP_DATA_BAD_NUL   0x02u
#define SMTP_DATA_BAD_LONG  0x04u /* a line over 998 octets */
#define SMTP_DATA_BAD_SIZE  0x08u /* the body went over max_size */
#define SMTP_DATA_BAD_NOMEM 0x10u /* set by the caller: keep nothing more */
#define SMTP_DATA_BAD_HEADER                                                   \
	0x20u /* set by the caller: the header block is too long; keep         \
		 nothing more */

/* Where the scanner is in a line, between pieces of input. */
enum smtp_data_pos {
	SMTP_DATA_BOL,   /* at the start of a line */
	SMTP_DATA_LINE,  /* inside a line */
	SMTP_DATA_CR,    /* after a CR */
	SMTP_DATA_DOT,   /* DATA: after a dot at the start of a line */
	SMTP_DATA_DOTCR, /* DATA: after ".\r" at the start of a line */
};

/* The scanner's state, embedded in its session (all zero: no message yet).
 * The caller may read every field; it writes only bad (SMTP_DATA_BAD_NOMEM,
 * or clearing a bit it has dealt with) and size (octets it added to the
 * body itself, such as a trace header, before the first scan). */
struct smtp_data_scan {
	enum smtp_data_pos pos;
	bool dot;          /* DATA mode: dot-stuffing and CRLF.CRLF */
	bool saw8bit;      /* an octet over 0x7f was seen */
	unsigned bad;      /* SMTP_DATA_BAD_* */
	size_t line_len;   /* octets of the current line so far */
	uint64_t size;     /* body octets kept so far (with the caller's) */
	uint64_t max_size; /* more than this sets SMTP_DATA_BAD_SIZE */
};

enum smtp_data_result {
	SMTP_DATA_MORE, /* the input is consumed: more is needed */
	SMTP_DATA_END, /* DATA: CRLF.CRLF consumed (its last octet ends USED) */
	SMTP_DATA_STOP, /* DATA: a bare CR or LF (BAD_BARE): read no more; the
			   end of data is ambiguous (SMTP smuggling) */
	SMTP_DATA_FULL, /* OUT has no room for the next octets: make room and
			   call again with the rest of the input */
};

/*
 * smtp_data_start — begin a message.  DOT: DATA mode (else BDAT).  SIZE:
 * body octets the caller holds already (its trace header), counted against
 * MAX_SIZE.  Keeps SC->bad and SC->saw8bit (zero the state with the
 * transaction).
 */
void smtp_data_start(struct smtp_data_scan *sc, bool dot, uint64_t size,
		     uint64_t max_size);

/*
 * smtp_data_scan — scan IN[0..N) and copy the octets to keep (dots
 * unstuffed, the end-of-data line dropped) to OUT[0..ROOM).  *USED: input
 * octets consumed (<= N); *OUT_LEN: octets written to OUT (<= ROOM).  OUT
 * may be NULL when ROOM is 0.  The body kept is cut at max_size octets
 * (BAD_SIZE is then set: the caller drops it); after BAD_SIZE or BAD_NOMEM
 * nothing more is written, but the input is still scanned (for its end and
 * its flags).
 * In DATA mode a CR not before LF, or an LF not after CR, stops the scan
 * before that octet (SMTP_DATA_STOP); in BDAT mode it sets BAD_BARE and the
 * scan goes on.  Never reads IN past N nor writes OUT past ROOM.
 */
enum smtp_data_result smtp_data_scan(struct smtp_data_scan *sc,
				     const uint8_t *in, size_t n, size_t *used,
				     uint8_t *out, size_t room,
				     size_t *out_len);

/*
 * smtp_data_finish — the end of a BDAT LAST message: a message must end
 * with CRLF.  A final bare CR sets BAD_BARE; an unterminated last line is
 * completed: returns the number of octets of "\r\n" the caller appends (0
 * or 2, counted against the size limit).
 */
size_t smtp_data_finish(struct smtp_data_scan *sc);

#endif

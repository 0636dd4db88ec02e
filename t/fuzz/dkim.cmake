# Fuzz harnesses of dkim/ (outpost_fuzz() comes from fuzz.cmake, which
# t/CMakeLists.txt includes first).  Each registers fuzz/NAME and
# asan/fuzz/NAME (corpus replay through t/fuzz/replay.c) and, with
# OUTPOST_FUZZ=ON, build/fuzz/NAME_fuzz:
#     build/fuzz/dkim_msg_fuzz -max_total_time=60 t/fuzz/corpus/dkim_msg
# The sources under test are listed (not only outpost_dkim) so that
# libFuzzer sees their coverage.

# dkim_msg: untrusted message bytes through the header block parser, header
# and body canonicalization, the body hash and dkim_sign() (Ed25519 key from
# a fixed seed); dmarc.c is not needed.
outpost_fuzz(dkim_msg
	SOURCES ${CMAKE_CURRENT_LIST_DIR}/dkim_msg_fuzz.c
		${PROJECT_SOURCE_DIR}/dkim/msg.c
		${PROJECT_SOURCE_DIR}/dkim/canon.c
		${PROJECT_SOURCE_DIR}/dkim/sign.c
		${PROJECT_SOURCE_DIR}/dkim/keys.c
	LIBS PkgConfig::OPENSSL PkgConfig::SODIUM
	CORPUS ${CMAKE_CURRENT_LIST_DIR}/corpus/dkim_msg)

# reencode: lines over 998 octets made legal before signing
# (build/fuzz/reencode_fuzz -max_len=300000 t/fuzz/corpus/reencode).
outpost_fuzz(reencode
	SOURCES ${CMAKE_CURRENT_LIST_DIR}/reencode_fuzz.c
		${PROJECT_SOURCE_DIR}/dkim/reencode.c
	CORPUS ${CMAKE_CURRENT_LIST_DIR}/corpus/reencode)

# The DMARC and SPF harnesses link the rest of dkim/ and dns/.
if(NOT TARGET outpost_dkim)
	message(WARNING "t/fuzz/dkim.cmake: no outpost_dkim: dmarc and spf fuzz harnesses not built")
	return()
endif()

# dmarc: the DMARC record parser (TXT answers) and the From parser (message
# headers, also through dkim/msg.c), then org domain and alignment of what
# it yields.
outpost_fuzz(dmarc
	SOURCES ${CMAKE_CURRENT_LIST_DIR}/dmarc_fuzz.c
		${PROJECT_SOURCE_DIR}/dkim/dmarc.c
		${PROJECT_SOURCE_DIR}/dkim/msg.c
	DEPS outpost_dkim outpost_dns
	LIBS PkgConfig::PSL
	CORPUS ${CMAKE_CURRENT_LIST_DIR}/corpus/dmarc)

# spf: the SPF record parser (TXT answers) and the macro expander.
outpost_fuzz(spf
	SOURCES ${CMAKE_CURRENT_LIST_DIR}/spf_fuzz.c
		${PROJECT_SOURCE_DIR}/dkim/spf.c
	DEPS outpost_dkim outpost_dns
	CORPUS ${CMAKE_CURRENT_LIST_DIR}/corpus/spf)

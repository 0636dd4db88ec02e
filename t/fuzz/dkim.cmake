# dkim/ on untrusted message bytes: the header block parser, header and body
# canonicalization, the body hash and dkim_sign() (Ed25519 key from a fixed
# seed).  Registers fuzz/dkim_msg and asan/fuzz/dkim_msg (corpus replay
# through t/fuzz/replay.c) and, with OUTPOST_FUZZ=ON, build/fuzz/dkim_msg_fuzz:
#     build/fuzz/dkim_msg_fuzz -max_total_time=60 t/fuzz/corpus/dkim_msg
# The sources under test are listed (not outpost_dkim) so that libFuzzer
# sees their coverage; dmarc.c is not needed.
set(_outpost_dkim_fuzz dkim_msg
	SOURCES ${CMAKE_CURRENT_LIST_DIR}/dkim_msg_fuzz.c
		${PROJECT_SOURCE_DIR}/dkim/msg.c
		${PROJECT_SOURCE_DIR}/dkim/canon.c
		${PROJECT_SOURCE_DIR}/dkim/sign.c
		${PROJECT_SOURCE_DIR}/dkim/keys.c
	LIBS PkgConfig::OPENSSL PkgConfig::SODIUM
	CORPUS ${CMAKE_CURRENT_LIST_DIR}/corpus/dkim_msg)
if(COMMAND outpost_fuzz)
	outpost_fuzz(${_outpost_dkim_fuzz})
else()
	cmake_language(DEFER CALL outpost_fuzz ${_outpost_dkim_fuzz})
endif()

# dkim/dmarc.c on untrusted bytes: the DMARC record parser (TXT answers) and
# the From parser (message headers, also through dkim/msg.c), then org
# domain and alignment of what it yields.  Registers fuzz/dmarc and
# asan/fuzz/dmarc (corpus replay) and, with OUTPOST_FUZZ=ON,
# build/fuzz/dmarc_fuzz.  outpost_fuzz() lives in fuzz.cmake, which the glob
# in t/CMakeLists.txt includes after this file: defer the call until then.
if(NOT TARGET outpost_dkim)
	message(WARNING "t/fuzz/dmarc.cmake: no outpost_dkim: dmarc fuzz harness not built")
	return()
endif()
set(_outpost_dmarc_fuzz dmarc
	SOURCES ${CMAKE_CURRENT_LIST_DIR}/dmarc_fuzz.c
		${PROJECT_SOURCE_DIR}/dkim/dmarc.c
		${PROJECT_SOURCE_DIR}/dkim/msg.c
	DEPS outpost_dkim outpost_dns
	LIBS PkgConfig::PSL
	CORPUS ${CMAKE_CURRENT_LIST_DIR}/corpus/dmarc)
if(COMMAND outpost_fuzz)
	outpost_fuzz(${_outpost_dmarc_fuzz})
else()
	cmake_language(DEFER CALL outpost_fuzz ${_outpost_dmarc_fuzz})
endif()

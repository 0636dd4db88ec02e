# dkim/spf.c on untrusted bytes: the SPF record parser (TXT answers) and
# the macro expander.  Registers fuzz/spf and asan/fuzz/spf (corpus
# replay) and, with OUTPOST_FUZZ=ON, build/fuzz/spf_fuzz.  outpost_fuzz()
# lives in fuzz.cmake, included after this file: defer the call until then.
if(NOT TARGET outpost_dkim)
	message(WARNING "t/fuzz/spf.cmake: no outpost_dkim: spf fuzz harness not built")
	return()
endif()
set(_outpost_spf_fuzz spf
	SOURCES ${CMAKE_CURRENT_LIST_DIR}/spf_fuzz.c
		${PROJECT_SOURCE_DIR}/dkim/spf.c
	DEPS outpost_dkim outpost_dns
	CORPUS ${CMAKE_CURRENT_LIST_DIR}/corpus/spf)
if(COMMAND outpost_fuzz)
	outpost_fuzz(${_outpost_spf_fuzz})
else()
	cmake_language(DEFER CALL outpost_fuzz ${_outpost_spf_fuzz})
endif()

# package.cmake — `make install` to FHS paths and `make package` (CPack, a
# .deb), included by the top CMakeLists.txt once every target exists.
#
# `make install` and `make package` use the prefix /usr: the unit's
# ExecStart names /usr/sbin/outpostd.  /etc, /var and the unit directory are
# absolute, as Debian has them.  Both programs go to sbin: outpost(8) is an
# administrator's tool (queue control through a root-only socket by default,
# passwords, keys), documented in section 8 like outpostd.
if(CMAKE_INSTALL_PREFIX_INITIALIZED_TO_DEFAULT)
	set(CMAKE_INSTALL_PREFIX /usr CACHE PATH "Install prefix" FORCE)
endif()
include(GNUInstallDirs)
set(OUTPOST_PKG_DIR ${PROJECT_SOURCE_DIR}/conf/pkg)
set(OUTPOST_DOC_DIR ${CMAKE_INSTALL_DATADIR}/doc/outpost)

# Man pages, changelog: gzip -9n (no name, no time stamp: reproducible).
# The changelog's version and maintainer are the package's.
set(OUTPOST_MAINTAINER "Outpost developers <outpost@example.org>" CACHE STRING
	"Maintainer field of the Debian package")
set(OUTPOST_HOMEPAGE "https://outpost.example.org/" CACHE STRING
	"Homepage field of the Debian package")
set(CPACK_DEBIAN_PACKAGE_RELEASE 1)
configure_file(${OUTPOST_PKG_DIR}/changelog.Debian.in
	${CMAKE_BINARY_DIR}/pkg/changelog.Debian @ONLY)
set(_outpost_gz "")
foreach(src ${PROJECT_SOURCE_DIR}/mta/outpostd.8
		${PROJECT_SOURCE_DIR}/mta/cli/outpost.8
		${PROJECT_SOURCE_DIR}/conf/outpost.conf.5
		${CMAKE_BINARY_DIR}/pkg/changelog.Debian)
	get_filename_component(n ${src} NAME)
	add_custom_command(OUTPUT ${CMAKE_BINARY_DIR}/pkg/${n}.gz
		COMMAND ${CMAKE_COMMAND} -E make_directory ${CMAKE_BINARY_DIR}/pkg
		COMMAND sh -c "gzip -9n -c \"$1\" > \"$2\"" gzip
			${src} ${CMAKE_BINARY_DIR}/pkg/${n}.gz
		DEPENDS ${src} VERBATIM)
	list(APPEND _outpost_gz ${CMAKE_BINARY_DIR}/pkg/${n}.gz)
endforeach()
add_custom_target(outpost_pkg_files ALL DEPENDS ${_outpost_gz})

install(TARGETS outpostd outpost RUNTIME DESTINATION ${CMAKE_INSTALL_SBINDIR})
install(FILES ${CMAKE_BINARY_DIR}/pkg/outpostd.8.gz
	${CMAKE_BINARY_DIR}/pkg/outpost.8.gz
	DESTINATION ${CMAKE_INSTALL_MANDIR}/man8)
install(FILES ${CMAKE_BINARY_DIR}/pkg/outpost.conf.5.gz
	DESTINATION ${CMAKE_INSTALL_MANDIR}/man5)
install(FILES ${PROJECT_SOURCE_DIR}/mta/outpostd.service
	DESTINATION /lib/systemd/system)
# The packaged configuration (loopback submission, FHS paths); an existing
# one is an operator's and is kept.  The package stages into an empty tree,
# so it always gets the file.
install(CODE "
	if(EXISTS \"\$ENV{DESTDIR}/etc/outpost/outpost.conf\")
		message(STATUS \"Kept: \$ENV{DESTDIR}/etc/outpost/outpost.conf\")
	else()
		file(INSTALL DESTINATION /etc/outpost TYPE FILE
			FILES \"${OUTPOST_PKG_DIR}/outpost.conf\")
	endif()")
# The bounce-category rules beside it (a conffile: dpkg keeps an
# operator's changes and asks on upgrade).
install(FILES ${PROJECT_SOURCE_DIR}/conf/bounce-categories
	DESTINATION /etc/outpost)
install(DIRECTORY DESTINATION /var/lib/outpost)
install(DIRECTORY DESTINATION /var/log/outpost)
install(FILES ${OUTPOST_PKG_DIR}/lintian-overrides
	DESTINATION ${CMAKE_INSTALL_DATADIR}/lintian/overrides RENAME outpost)
# Every key, commented, with its default.
install(FILES ${PROJECT_SOURCE_DIR}/conf/outpost.conf
	DESTINATION ${OUTPOST_DOC_DIR}/examples)
install(FILES ${PROJECT_SOURCE_DIR}/COPYING DESTINATION ${OUTPOST_DOC_DIR}
	RENAME copyright)
install(FILES ${CMAKE_BINARY_DIR}/pkg/changelog.Debian.gz
	DESTINATION ${OUTPOST_DOC_DIR})

set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME outpost)
set(CPACK_PACKAGE_VENDOR "The Outpost developers")
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
# cpack installs what is built (make package builds the programs only) rather
# than building every test first.
set(CMAKE_SKIP_INSTALL_ALL_DEPENDENCY ON)
# Staged under DESTDIR so that /etc, /var and /lib land in the package,
# never on this machine.
set(CPACK_SET_DESTDIR ON)
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_STRIP_FILES ON)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_MAINTAINER "${OUTPOST_MAINTAINER}")
set(CPACK_DEBIAN_PACKAGE_HOMEPAGE "${OUTPOST_HOMEPAGE}")
set(CPACK_DEBIAN_PACKAGE_SECTION mail)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY
	"high-throughput outbound mail transfer agent")
# The synopsis is the summary; this is the extended description.
set(CPACK_DEBIAN_PACKAGE_DESCRIPTION "Outpost accepts mail from an email service provider's platform over SMTP
(AUTH with Argon2id passwords, STARTTLS), signs it with DKIM (RSA and
Ed25519), checks DMARC alignment, queues it durably and encrypted at rest
(LMDB), and delivers it by MX with per-destination connection and rate
limits, back-off and suspensions.  No address appears in clear in its logs.
.
The package runs outpostd as a systemd service (enabled, not started) that
accepts mail on 127.0.0.1:587 only; outpost(8) controls its queue.")
# Library dependencies from dpkg-shlibdeps; adduser and deb-systemd-helper
# for the maintainer scripts.
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_DEPENDS "adduser, init-system-helpers (>= 1.54~)")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA ${OUTPOST_PKG_DIR}/conffiles
	${OUTPOST_PKG_DIR}/postinst ${OUTPOST_PKG_DIR}/prerm
	${OUTPOST_PKG_DIR}/postrm)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
include(CPack)

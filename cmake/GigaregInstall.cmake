# Install rules and the package config, so that downstream projects can write
#   find_package(gigareg REQUIRED)  and  target_link_libraries(app gigareg::gigareg)
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

install(TARGETS gigareg EXPORT gigaregTargets
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
  RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR}
  INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(DIRECTORY ${PROJECT_SOURCE_DIR}/include/gigareg DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}
        FILES_MATCHING PATTERN "*.hpp")
install(FILES ${PROJECT_BINARY_DIR}/include/gigareg/config.hpp
        DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/gigareg)

set(GIGAREG_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/gigareg)
install(EXPORT gigaregTargets NAMESPACE gigareg:: DESTINATION ${GIGAREG_CMAKE_DIR})
configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/gigaregConfig.cmake.in
  ${PROJECT_BINARY_DIR}/gigaregConfig.cmake INSTALL_DESTINATION ${GIGAREG_CMAKE_DIR})
write_basic_package_version_file(${PROJECT_BINARY_DIR}/gigaregConfigVersion.cmake
  COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/gigaregConfig.cmake ${PROJECT_BINARY_DIR}/gigaregConfigVersion.cmake
              ${PROJECT_SOURCE_DIR}/cmake/FindLibdeflate.cmake
              ${PROJECT_SOURCE_DIR}/cmake/FindBlosc.cmake
              ${PROJECT_SOURCE_DIR}/cmake/FindZstd.cmake
        DESTINATION ${GIGAREG_CMAKE_DIR})

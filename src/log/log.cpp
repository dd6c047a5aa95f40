#include "layerfs/log/log.hpp"

#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/sinks/syslog_sink.h>
#include <spdlog/spdlog.h>
#include <syslog.h>

namespace layerfs::log {
namespace {

spdlog::level::level_enum to_spdlog(cli::LogLevel level) {
    switch (level) {
        case cli::LogLevel::trace:
            return spdlog::level::trace;
        case cli::LogLevel::debug:
            return spdlog::level::debug;
        case cli::LogLevel::info:
            return spdlog::level::info;
        case cli::LogLevel::warn:
            return spdlog::level::warn;
        case cli::LogLevel::error:
            return spdlog::level::err;
        case cli::LogLevel::off:
            return spdlog::level::off;
    }
    return spdlog::level::info;
}

void install(std::shared_ptr<spdlog::logger> logger, cli::LogLevel level) {
    logger->set_level(to_spdlog(level));
    logger->flush_on(spdlog::level::warn);
    spdlog::set_default_logger(std::move(logger));
}

}  // namespace

void log_to_stderr(cli::LogLevel level) {
    auto logger = std::make_shared<spdlog::logger>(
        "layerfs", std::make_shared<spdlog::sinks::stderr_sink_mt>());
    logger->set_pattern("layerfs: [%l] %v");
    install(std::move(logger), level);
}

void log_to_syslog(cli::LogLevel level) {
    auto logger = std::make_shared<spdlog::logger>(
        "layerfs",
        std::make_shared<spdlog::sinks::syslog_sink_mt>("layerfs", LOG_PID, LOG_DAEMON, false));
    logger->set_pattern("%v");
    install(std::move(logger), level);
}

}  // namespace layerfs::log

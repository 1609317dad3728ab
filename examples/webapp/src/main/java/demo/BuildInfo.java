package demo;

import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.util.Properties;

/** What this build is: the git sha it was built from and the greeting shown on the start page. */
public final class BuildInfo {
    static final String UNKNOWN = "unknown";

    private final String sha;
    private final String greeting;

    BuildInfo(String sha, String greeting) {
        this.sha = blankOrUnfiltered(sha) ? UNKNOWN : sha.trim();
        this.greeting = greeting == null ? "" : greeting.trim();
    }

    /** Reads app.properties, which Maven filled in at build time. */
    public static BuildInfo load() {
        Properties p = new Properties();
        try (InputStream in = BuildInfo.class.getResourceAsStream("/app.properties")) {
            if (in != null) {
                p.load(in);
            }
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
        return new BuildInfo(p.getProperty("git.sha"), p.getProperty("greeting"));
    }

    public String sha() {
        return sha;
    }

    public String greeting() {
        return greeting;
    }

    /** The health answer: {"status":"UP","sha":"..."}. */
    public String healthJson() {
        return "{\"status\":\"UP\",\"sha\":\"" + jsonEscape(sha) + "\"}";
    }

    private static boolean blankOrUnfiltered(String s) {
        return s == null || s.isBlank() || s.contains("${");
    }

    static String jsonEscape(String s) {
        StringBuilder b = new StringBuilder(s.length());
        for (char c : s.toCharArray()) {
            switch (c) {
                case '"' -> b.append("\\\"");
                case '\\' -> b.append("\\\\");
                default -> {
                    if (c < 0x20) {
                        b.append(String.format("\\u%04x", (int) c));
                    } else {
                        b.append(c);
                    }
                }
            }
        }
        return b.toString();
    }

    static String htmlEscape(String s) {
        return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
                .replace("\"", "&quot;");
    }
}

